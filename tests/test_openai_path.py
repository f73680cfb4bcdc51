"""The OpenAI provider's cheap call path (issue 11 item 7) gives what the SDK's create() path gave: the reply read
from the raw JSON equals the ChatCompletion model's reading for every body, good or broken, and the bytes a server
receives are the bytes create() sent. The create() path is kept here as the reference. Speed: bench/ only.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from agent.errors import ProviderError
from agent.plan import load_plan
from agent.prompts import sample_request
from agent.providers.base import Completion, Request
from agent.providers.openai import OpenAIProvider, _messages, rate_limits
from agent.reply import extract_json
from tests.fakeserver import fake_server_fixture  # noqa: F401 - registers `fake_server`

ROOT = Path(__file__).resolve().parent.parent


# ---- the reference: the provider as it was, every part through create() and the ChatCompletion model ----------

def _old_completion(body: Any, choice: Any, mode: str, headers: Any) -> Completion:
    message = choice.message
    content = message.content or ""
    finish = choice.finish_reason or "stop"
    refusal = getattr(message, "refusal", None)
    if refusal and not content:
        content, finish = refusal, "refusal"
    try:
        data = extract_json(content)
    except ValueError:
        data = None
    usage = body.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    return Completion(
        text=content, data=data,
        input_tokens=(usage.prompt_tokens or 0) if usage else 0,
        output_tokens=(usage.completion_tokens or 0) if usage else 0,
        cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
        finish_reason=finish, model=body.model or "", mode=mode, rate=rate_limits(headers),
    )


async def old_call(provider: OpenAIProvider, request: Request, mode: str) -> Completion:
    """OpenAIProvider._call before this change (its status/timeout/connection branches are unchanged)."""
    body: dict[str, Any] = {"messages": _messages(request, mode)}
    kwargs: dict[str, Any] = {"model": request.model or provider.model, "messages": openai.omit,
                              "temperature": request.temperature, provider._max_tokens_field: request.max_tokens,
                              "timeout": request.timeout}
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if mode == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": request.schema_name, "schema": request.schema, "strict": True}}
    elif mode == "json_object+schema":
        body["response_format"] = {"type": "json_object", "schema": request.schema}
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object"}
    kwargs["extra_body"] = {**body, **provider.extra_body}
    if mode == "json_object+schema":
        kwargs["extra_body"]["guided_json"] = request.schema
    raw = await provider._sdk().chat.completions.with_raw_response.create(**kwargs)
    try:
        parsed: Any = raw.parse()
        return _old_completion(parsed, parsed.choices[0], mode, raw.headers)
    except (ValueError, AttributeError, IndexError, TypeError, openai.APIResponseValidationError) as e:
        raise ProviderError(f"unreadable reply from {provider.shown_url or 'OpenAI'}: {type(e).__name__}",
                            retryable=True, kind="malformed") from None


# ---- replies: what a server may send back ---------------------------------------------------------------------

def chat(content: Any = '{"examples": ["a", "b"]}', **changes: Any) -> dict:
    reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": content}}],
             "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
                       "prompt_tokens_details": {"cached_tokens": 64}}}
    for key, value in changes.items():
        target, _, field = key.rpartition("__")
        where = reply
        for part in filter(None, target.split("__")):
            where = where[part][0] if part == "choices" else where[part]
        if value is DROP:
            del where[field]
        else:
            where[field] = value
    return reply


DROP = object()
RATE = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000", "x-ratelimit-reset-tokens": "1m2.5s"}
JSON = {"content-type": "application/json"}

BODIES: list[tuple[str, bytes, dict[str, str]]] = [
    ("plain", json.dumps(chat()).encode(), {**JSON, **RATE}),
    ("fenced and prose", json.dumps(chat('Here:\n```json\n{"examples": ["é", "日本"]}\n```\nDone.')).encode(), JSON),
    ("not JSON content", json.dumps(chat("I cannot help with that.")).encode(), JSON),
    ("torn JSON content", json.dumps(chat('{"examples": ["a", "b')).encode(), JSON),
    ("null content, refusal", json.dumps(chat(None, choices__message__refusal="I can't")).encode(), JSON),
    ("refusal beside content", json.dumps(chat(choices__message__refusal="no")).encode(), JSON),
    ("null content", json.dumps(chat(None)).encode(), JSON),
    ("content missing", json.dumps(chat(choices__message__content=DROP)).encode(), JSON),
    ("empty content", json.dumps(chat("")).encode(), JSON),
    ("content a list", json.dumps(chat([{"type": "text", "text": "{}"}])).encode(), JSON),
    ("content a number", json.dumps(chat(5)).encode(), JSON),
    ("content zero", json.dumps(chat(0)).encode(), JSON),
    ("finish length", json.dumps(chat(choices__finish_reason="length")).encode(), JSON),
    ("finish null", json.dumps(chat(choices__finish_reason=None)).encode(), JSON),
    ("finish missing", json.dumps(chat(choices__finish_reason=DROP)).encode(), JSON),
    ("model null", json.dumps(chat(model=None)).encode(), JSON),
    ("model missing", json.dumps(chat(model=DROP)).encode(), JSON),
    ("usage missing", json.dumps(chat(usage=DROP)).encode(), JSON),
    ("usage null", json.dumps(chat(usage=None)).encode(), JSON),
    ("usage empty", json.dumps(chat(usage={})).encode(), JSON),
    ("usage counts null", json.dumps(chat(usage__prompt_tokens=None, usage__completion_tokens=None)).encode(), JSON),
    ("details null", json.dumps(chat(usage__prompt_tokens_details=None)).encode(), JSON),
    ("details empty", json.dumps(chat(usage__prompt_tokens_details={})).encode(), JSON),
    ("cached null", json.dumps(chat(usage__prompt_tokens_details__cached_tokens=None)).encode(), JSON),
    ("usage a list", json.dumps(chat(usage=[1])).encode(), JSON),
    ("usage a string", json.dumps(chat(usage="x")).encode(), JSON),
    ("extra fields", json.dumps({**chat(), "system_fingerprint": "fp", "service_tier": "default"}).encode(), JSON),
    ("no choices", json.dumps(chat(choices=[])).encode(), JSON),
    ("choices missing", json.dumps(chat(choices=DROP)).encode(), JSON),
    ("choices null", json.dumps(chat(choices=None)).encode(), JSON),
    ("choice a list", json.dumps(chat(choices=[[1]])).encode(), JSON),
    ("choice null", json.dumps(chat(choices=[None])).encode(), JSON),
    ("message missing", json.dumps(chat(choices__message=DROP)).encode(), JSON),
    ("message null", json.dumps(chat(choices__message=None)).encode(), JSON),
    ("message a string", json.dumps(chat(choices__message="hi")).encode(), JSON),
    ("body a list", b"[1, 2]", JSON),
    ("body a string", b'"hello"', JSON),
    ("body a number", b"5", JSON),
    ("body null", b"null", JSON),
    ("body empty", b"", JSON),
    ("body torn", b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "{\\"a\\"', JSON),
    ("body HTML", b"<html>502 Bad Gateway</html>", {"content-type": "text/html"}),
    ("JSON as text/plain", json.dumps(chat()).encode(), {"content-type": "text/plain"}),
    ("no content type", json.dumps(chat()).encode(), {}),
    ("not UTF-8", b'{"choices": [{"message": {"content": "\xff\xfe"}}]}', JSON),
    ("UTF-16", json.dumps(chat()).encode("utf-16"), JSON),
    ("rate headers odd", json.dumps(chat()).encode(), {**JSON, "x-ratelimit-reset-tokens": "soon",
                                                         "x-ratelimit-limit-tokens": "many"}),
]
# Where the old path crashed with an exception that is not a fault (a KeyError out of parsed.choices[0] on a
# mapping): the new path calls the body unreadable, as it does every other body of the wrong shape.
OLD_CRASHED = {"choices a mapping": json.dumps(chat(choices={"0": {}})).encode()}


def outcome(run) -> Any:
    """What a call gave. An unreadable reply's message ends in the Python error that found it (KeyError where
    the model's reading gave AttributeError): that name is not compared."""
    try:
        return ("ok", asyncio.run(run()))
    except ProviderError as e:
        return ("error", e.kind, e.retryable, str(e).rsplit(": ", 1)[0] if e.kind == "malformed" else str(e))
    except Exception as e:   # noqa: BLE001 - a crash is an outcome to compare too
        return ("crash", type(e).__name__)


def mocked(body: bytes, headers: dict[str, str]) -> OpenAIProvider:
    provider = OpenAIProvider(model="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=body, headers=headers))
    provider._client = openai.AsyncOpenAI(api_key="sk-test", base_url=provider.base_url, max_retries=0,
                                          http_client=httpx2.AsyncClient(transport=transport))
    return provider


REQUEST = Request(system="sys", user="Write 2.", schema={"type": "object"}, model="m", seed=7)


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
@pytest.mark.parametrize(("name", "body", "headers"), BODIES, ids=[b[0] for b in BODIES])
def test_reading_the_raw_reply_equals_the_sdk_model(name, body, headers, mode):
    old = outcome(lambda: old_call(mocked(body, headers), REQUEST, mode))
    new = outcome(lambda: mocked(body, headers)._call(REQUEST, mode))
    assert new == old
    assert old[0] != "crash"


def test_the_corpus_holds_good_and_broken_replies():
    results = [outcome(lambda b=b, h=h: mocked(b, h)._call(REQUEST, "json_schema")) for _, b, h in BODIES]
    good = [r[1] for r in results if r[0] == "ok"]
    assert len(good) >= 20 and sum(r[0] == "error" and r[1] == "malformed" for r in results) >= 15
    assert {c.finish_reason for c in good} >= {"stop", "length", "refusal"}
    assert any(c.cached_tokens == 64 for c in good) and any(c.rate.get("tokens_reset_s") == 62.5 for c in good)
    assert any(c.data == {"examples": ["é", "日本"]} for c in good)


def test_a_body_the_old_path_crashed_on_is_unreadable_now():
    for body in OLD_CRASHED.values():
        assert outcome(lambda b=body: old_call(mocked(b, JSON), REQUEST, "json_schema")) == ("crash", "KeyError")
        new = outcome(lambda b=body: mocked(b, JSON)._call(REQUEST, "json_schema"))
        assert new[:3] == ("error", "malformed", True)


# ---- the wire: byte for byte ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["json_schema", "json_object+schema", "json_object", "text"])
@pytest.mark.parametrize("extra_body", [{}, {"top_k": 20, "min_p": 0.05},
                                        {"guided_json": {"user": "own"}, "temperature": 0.1}])
@pytest.mark.parametrize("official", [False, True])
@pytest.mark.parametrize("transport", ["aiohttp", "httpx2"])
def test_the_bytes_on_the_wire_are_what_create_sent(fake_server, mode, extra_body, official, transport):
    server = fake_server(max_requests=10)
    request = sample_request(load_plan(ROOT / "plans" / "example.yaml"))
    provider, reference = (OpenAIProvider(model=request.model, api_key="sk-test", base_url=server.openai_url,
                                          extra_body=extra_body) for _ in range(2))
    provider.transport, reference.transport = transport, "httpx2"   # the old path on the old transport
    if official:   # the official API's field name for the output limit
        provider._max_tokens_field = reference._max_tokens_field = "max_completion_tokens"

    async def both() -> None:
        await provider._call(request, mode)
        await old_call(reference, request, mode)
        await provider.aclose()
        await reference.aclose()

    asyncio.run(both())
    new, old = server.requests[0], server.requests[1]
    assert new.raw == old.raw and new.path == old.path
    assert json.loads(new.raw) == new.body and new.body["messages"] != []
    # the raw-response marker is the SDK's own (with_raw_response), read by the SDK, not by the server
    skip = {"x-stainless-retry-count", "x-stainless-raw-response"}
    assert {k: v for k, v in new.headers.items() if k not in skip} == {
        k: v for k, v in old.headers.items() if k not in skip}
    assert new.headers["authorization"] == "<redacted>" and "x-stainless-raw-response" not in new.headers


# ---- the transports: aiohttp (openai[aiohttp]) where installed, httpx2 otherwise; faults read the same --------

FAULT_KINDS = [("drop", "connection"), ("hang", "timeout"), ("500", "server"), ("429", "rate_limit"),
               ("malformed", "malformed"), ("401", "auth"), ("400", "bad_request"), (None, None)]


def one_call(url: str, transport: str, timeout: float = 0.5) -> tuple[str | None, bool | None, str]:
    provider = OpenAIProvider(model="m", api_key="sk-FAKEKEY-0123456789", base_url=url)
    provider.transport = transport

    async def go() -> tuple[str | None, bool | None, str]:
        try:
            completion = await provider.complete(Request(system="s", user="u", schema={"type": "object"},
                                                         model="m", timeout=timeout))
            return None, None, completion.text
        except ProviderError as e:
            return e.kind, e.retryable, str(e)
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(("fault", "kind"), FAULT_KINDS)
def test_both_transports_read_every_fault_alike(fake_server, fault, kind):
    seen = {}
    for transport in ("httpx2", "aiohttp"):
        server = fake_server(faults=[fault], hang_s=2.0, max_requests=2)
        seen[transport] = one_call(server.openai_url, transport)
        assert [r.outcome for r in server.requests] == [fault or "ok"]
    assert seen["httpx2"][:2] == seen["aiohttp"][:2] and seen["httpx2"][0] == kind
    assert not any("FAKEKEY" in message for _, _, message in seen.values())
    if kind == "timeout":   # the same words, not only the same kind
        assert seen["httpx2"][2] == seen["aiohttp"][2] == "OpenAI request timed out after 0.5 s"


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://no-such-host.invalid/v1"])
def test_an_unreachable_server_is_a_connection_fault_on_both_transports(url):
    # the SDK's aiohttp adapter raises these as timeouts; the provider reads them as httpx2 did
    for transport in ("httpx2", "aiohttp"):
        kind, retryable, message = one_call(url, transport, timeout=5.0)
        assert (kind, retryable) == ("connection", True) and message.startswith(f"cannot reach {url}: "), transport


def test_aiohttp_is_used_where_installed_and_httpx2_is_the_fallback(fake_server, monkeypatch):
    server = fake_server(max_requests=4)
    provider = OpenAIProvider(model="m", api_key="sk-test", base_url=server.openai_url)
    assert provider.transport == "aiohttp"
    assert isinstance(provider._sdk()._client, openai.DefaultAioHttpClient)

    def missing() -> None:
        raise RuntimeError("To use the aiohttp client you must have installed the package with the `aiohttp` extra")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    fallback = OpenAIProvider(model="m", api_key="sk-test", base_url=server.openai_url)

    async def call() -> Completion:
        try:
            return await fallback.complete(REQUEST)
        finally:
            assert not isinstance(fallback._client._client, type(provider._client._client))
            await fallback.aclose()

    assert asyncio.run(call()).text == "{}" and fallback.transport == "httpx2"
    # user:password@ in the URL: aiohttp would refuse it beside the Authorization header
    with_user = OpenAIProvider(model="m", api_key="sk-test", base_url=server.openai_url.replace("//", "//u:p@"))
    assert with_user.transport == "httpx2"


def _old_rate_limits(headers: Any) -> dict[str, float]:
    """openai.rate_limits before it read the headers in one pass: a get() per header."""
    import contextlib

    from agent.providers.openai import go_seconds

    rate: dict[str, float] = {}
    for kind in ("requests", "tokens"):
        for field in ("limit", "remaining"):
            value = headers.get(f"x-ratelimit-{field}-{kind}")
            if value:
                with contextlib.suppress(ValueError):
                    rate[f"{kind}_{field}"] = float(value)
        reset = headers.get(f"x-ratelimit-reset-{kind}")
        seconds = go_seconds(reset) if reset else None
        if seconds is not None:
            rate[f"{kind}_reset_s"] = seconds
    return rate


def test_rate_headers_read_in_one_pass_equal_a_get_per_header():
    import random

    import httpx2

    rng = random.Random(11)
    names = [f"x-ratelimit-{f}-{k}" for f in ("limit", "remaining", "reset") for k in ("requests", "tokens")]
    values = ["30000", "29999", "0", "", "1.5", "abc", "6m0s", "20ms", "1h2m3.5s", "7", " 12 ", "1e3", "-4"]
    others = ["content-type", "x-request-id", "openai-processing-ms", "x-ratelimit-limit-input-tokens", "date"]
    checked = 0
    for _ in range(2000):
        raw = []
        for _ in range(rng.randrange(12)):
            name = rng.choice(names + others)
            name = name.upper() if rng.random() < 0.2 else name.title() if rng.random() < 0.2 else name
            raw.append((name, rng.choice(values)))
        headers = httpx2.Headers(raw)
        assert rate_limits(headers) == _old_rate_limits(headers), raw
        as_dict = dict(raw)   # a plain mapping: the same exact-case lookups
        assert rate_limits(as_dict) == _old_rate_limits(as_dict), raw
        checked += bool(_old_rate_limits(headers))
    assert checked > 1000
