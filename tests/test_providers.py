"""The real OpenAI and Anthropic SDK code paths against the loopback fake server (tests/fakeserver.py)."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
from pathlib import Path

import pytest

from agent.errors import ConfigError, ProviderError
from agent.faults import retry_after_s
from agent.limits import Limiter
from agent.providers.anthropic import AnthropicProvider
from agent.providers.base import Request
from agent.providers.openai import OpenAIProvider, go_seconds
from agent.reply import load_json
from agent.retries import Attempt, call_with_retries
from tests.fakeserver import FakeServer, approx_tokens, fake_server_fixture  # noqa: F401 - registers `fake_server`

pytestmark = pytest.mark.timeout(30)

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-FAKEKEY-0123456789abcdef"
SCHEMA = {"type": "object", "properties": {"examples": {"type": "array", "items": {"type": "string"}}},
          "required": ["examples"], "additionalProperties": False}
REPLY = {"examples": ["how do I reset my router?", "what is a VLAN?"]}
SYSTEM = "You write realistic support questions for a networking help desk. " * 20


def responder(body: dict) -> str:
    return json.dumps(REPLY)


def request(**changes) -> Request:
    return Request(**{"system": SYSTEM, "user": "Write 2 questions.", "schema": SCHEMA, "model": "m",
                      "timeout": 2.0, **changes})


def openai_provider(server, key: str = FAKE_KEY) -> OpenAIProvider:
    return OpenAIProvider(model="m", api_key=key, base_url=server.openai_url)


def anthropic_provider(server, key: str = FAKE_KEY) -> AnthropicProvider:
    return AnthropicProvider(model="m", api_key=key, base_url=server.anthropic_url)


def complete_once(provider, req: Request):
    """One call in its own event loop, the provider closed after it (an unclosed aiohttp session warns at exit)."""
    async def run():
        try:
            return await provider.complete(req)
        finally:
            await provider.aclose()

    return asyncio.run(run())


async def retried(provider, req: Request, attempts: list[Attempt], **kw):
    try:
        return await call_with_retries(provider, req, Limiter(), on_attempt=attempts.append, initial_wait=0.01,
                                       **kw)
    finally:
        await provider.aclose()


# --- success ------------------------------------------------------------------------------------------------
def test_openai_success_reads_content_usage_and_rate_headers(fake_server):
    server = fake_server(responder=responder, rpm=600)

    async def run():
        provider = openai_provider(server)
        first = await provider.complete(request())
        second = await provider.complete(request())
        await provider.aclose()
        return first, second

    first, second = asyncio.run(run())
    assert first.data == REPLY and json.loads(first.text) == REPLY
    assert first.mode == "json_schema" and first.finish_reason == "stop"
    body = server.requests[0].body
    assert first.input_tokens == approx_tokens(json.dumps(body["messages"]))
    assert first.output_tokens == approx_tokens(json.dumps(REPLY))
    assert first.cached_tokens == 0 and second.cached_tokens == approx_tokens(SYSTEM)
    assert first.rate["requests_limit"] == 600 and first.rate["requests_remaining"] == 599
    assert second.rate["requests_remaining"] == 598
    assert first.rate["tokens_limit"] == server.tokens_per_minute and first.rate["tokens_reset_s"] == 360
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "examples", "schema": SCHEMA, "strict": True}}
    assert body["max_tokens"] == 8000 and body["messages"][0] == {"role": "system", "content": SYSTEM}
    headers = server.requests[0].headers
    assert headers["authorization"] == "<redacted>" and FAKE_KEY not in json.dumps(headers)


def test_anthropic_success_uses_forced_tool_and_cached_system_block(fake_server):
    server = fake_server(responder=responder)

    async def run():
        provider = anthropic_provider(server)
        first = await provider.complete(request())
        second = await provider.complete(request())
        await provider.aclose()
        return first, second

    first, second = asyncio.run(run())
    assert first.data == REPLY and json.loads(first.text) == REPLY
    assert first.mode == "tool" and first.finish_reason == "stop"
    body = server.requests[0].body
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert body["tool_choice"]["type"] == "tool" and body["tool_choice"]["name"] == body["tools"][0]["name"]
    assert first.cached_tokens == 0 and second.cached_tokens == approx_tokens(SYSTEM)
    # our input_tokens is the whole prompt, cached or not: the same for both calls
    assert first.input_tokens == second.input_tokens > second.cached_tokens
    assert first.output_tokens == approx_tokens(json.dumps(REPLY))
    assert first.rate["requests_limit"] == 1_000_000
    assert first.rate["input_tokens_limit"] == first.rate["output_tokens_limit"] == server.tokens_per_minute
    assert 0 <= first.rate["input_tokens_reset_s"] <= 2
    headers = server.requests[0].headers   # the key travels as x-api-key or authorization, never recorded
    assert "<redacted>" in headers.values() and FAKE_KEY not in json.dumps(headers)


# --- structured-output fallback -----------------------------------------------------------------------------
def test_refused_json_schema_falls_back_to_json_object_and_remembers(fake_server):
    server = fake_server(responder=responder, response_formats=("json_object",))

    async def run():
        provider = openai_provider(server)
        results = [await provider.complete(request()) for _ in range(2)]
        await provider.aclose()
        return results

    first, second = asyncio.run(run())
    assert first.mode == second.mode == "json_object" and first.data == second.data == REPLY
    sent = [(r.body["response_format"]["type"], "schema" in r.body["response_format"]) for r in server.requests]
    # json_schema refused, then json_object with the schema (llama-cpp's grammar mode) refused, then plain
    # json_object; the refusals are not asked again
    assert sent == [("json_schema", False), ("json_object", True), ("json_object", False), ("json_object", False)]
    system = server.requests[2].body["messages"][0]["content"]
    assert system.startswith(SYSTEM) and json.dumps(SCHEMA, indent=1) in system


def test_refused_json_object_too_falls_back_to_text_and_extracts_json(fake_server):
    server = fake_server(responder=responder, response_formats=())

    async def run():
        provider = openai_provider(server)
        results = [await provider.complete(request()) for _ in range(2)]
        await provider.aclose()
        return results

    first, second = asyncio.run(run())
    assert first.mode == second.mode == "text" and first.data == second.data == REPLY
    assert [r.outcome for r in server.requests] == ["refuse_json_schema", "refuse_json_object+schema",
                                                    "refuse_json_object", "ok", "ok"]
    assert "response_format" not in server.requests[-1].body


def test_a_single_refusal_fault_also_triggers_the_fallback(fake_server):
    server = fake_server(responder=responder, faults=["refuse_json_schema"])
    completion = complete_once(openai_provider(server), request())
    assert completion.mode == "json_object+schema" and completion.data == REPLY and len(server.requests) == 2
    assert server.requests[1].body["response_format"] == {"type": "json_object", "schema": SCHEMA}


def test_an_unrelated_not_supported_error_does_not_downgrade_the_mode(fake_server):
    server = fake_server(responder=responder, faults=["400"],
                         bad_request_message="temperature is not supported with this model")
    provider = openai_provider(server)

    async def run():
        with pytest.raises(ProviderError) as caught:
            await provider.complete(request())
        later = await provider.complete(request())
        await provider.aclose()
        return caught.value, later

    error, later = asyncio.run(run())
    assert error.kind == "bad_request" and not error.retryable
    assert len(server.requests) == 2 and provider.mode == later.mode == "json_schema"


@pytest.mark.parametrize(("content", "expected"), [
    ('Sure!\n```json\n{"a": {"b": "}"}}\n```\nanything else?', {"a": {"b": "}"}}),
    ('Here: {"a": [1, 2]} and then {"c": 3}', {"a": [1, 2]}),
    ('  {"a": 1}\n', {"a": 1}),
    ('Use {curly} braces: {"a": 1}', {"a": 1}),
])
def test_load_json_takes_the_first_object(content, expected):
    assert load_json(content) == (expected, True)


def test_load_json_refuses_text_with_no_json_object():
    with pytest.raises(ValueError):
        load_json("no json { here")


# --- transient faults, retried ------------------------------------------------------------------------------
def test_429_retry_waits_at_least_retry_after(fake_server):
    server = fake_server(responder=responder, faults=["429"], retry_after_s=0.3)
    attempts: list[Attempt] = []
    completion = asyncio.run(retried(openai_provider(server), request(), attempts))
    assert completion.data == REPLY
    assert [(a.status, a.kind) for a in attempts] == [("error", "rate_limit"), ("ok", None)]
    assert attempts[0].retry_after == pytest.approx(0.3)
    first, second = server.requests
    assert second.time - first.time >= 0.3   # measured at the server, not by the test's clock


@pytest.mark.parametrize("make", [openai_provider, anthropic_provider])
def test_500_and_529_are_retried_then_succeed(fake_server, make):
    server = fake_server(responder=responder, faults=["500", "529", None])
    attempts: list[Attempt] = []
    completion = asyncio.run(retried(make(server), request(), attempts))
    assert completion.data == REPLY
    assert [a.kind for a in attempts] == ["server", "overloaded", None]
    assert len(server.requests) == 3   # SDK retries are off: the server sees exactly our attempts


@pytest.mark.parametrize("make", [openai_provider, anthropic_provider])
@pytest.mark.parametrize(("fault", "kind"), [("hang", "timeout"), ("drop", "connection"), ("malformed", "malformed")])
def test_transport_faults_are_retried_with_their_kind(fake_server, make, fault, kind):
    server = fake_server(responder=responder, faults=[fault, None], hang_s=3.0)
    attempts: list[Attempt] = []
    completion = asyncio.run(retried(make(server), request(timeout=0.3), attempts))
    assert completion.data == REPLY
    assert [a.kind for a in attempts] == [kind, None]
    assert [r.outcome for r in server.requests] == [fault, "ok"]


@pytest.mark.parametrize("make", [openai_provider, anthropic_provider])
def test_truncated_reply_surfaces_as_length_and_is_not_retried(fake_server, make):
    server = fake_server(responder=responder, faults=["length"])
    attempts: list[Attempt] = []
    completion = asyncio.run(retried(make(server), request(), attempts))
    assert completion.finish_reason == "length" and completion.data is None
    assert len(server.requests) == 1 and [a.status for a in attempts] == ["ok"]


def test_sdk_does_not_retry_on_its_own(fake_server):
    server = fake_server(responder=responder, faults=["500", None])
    with pytest.raises(ProviderError) as caught:
        complete_once(openai_provider(server), request())
    assert caught.value.retryable and caught.value.kind == "server"
    assert len(server.requests) == 1


# --- not retried, and no key leaks ----------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "variable"), [(openai_provider, "OPENAI_API_KEY"),
                                                (anthropic_provider, "ANTHROPIC_API_KEY")])
@pytest.mark.parametrize(("fault", "kind"), [("400", "bad_request"), ("401", "auth")])
def test_client_errors_are_not_retried_and_never_show_the_key(fake_server, caplog, make, variable, fault, kind):
    caplog.set_level(logging.DEBUG)
    server = fake_server(responder=responder, faults=[fault])
    attempts: list[Attempt] = []
    provider = make(server)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(retried(provider, request(), attempts))
    error = caught.value
    assert error.kind == kind and not error.retryable
    assert len(server.requests) == 1 and len(attempts) == 1
    if kind == "auth":
        assert variable in str(error)
    shown = [str(error), repr(error), repr(provider), caplog.text, *(a.message for a in attempts)]
    assert not any(FAKE_KEY in text for text in shown)


def test_key_never_appears_across_every_fault(fake_server, caplog):
    caplog.set_level(logging.DEBUG)
    faults = ["429", "500", "529", "drop", "malformed", "hang", "401"]
    server = fake_server(responder=responder, faults=faults, hang_s=2.0)
    attempts: list[Attempt] = []
    with pytest.raises(ProviderError) as caught:
        asyncio.run(retried(openai_provider(server), request(timeout=0.3), attempts, max_attempts=10))
    assert [a.kind for a in attempts] == ["rate_limit", "server", "overloaded", "connection", "malformed",
                                          "timeout", "auth"]
    assert "Incorrect API key" not in str(caught.value)   # the server echoed the key in this message
    texts = [str(caught.value), caplog.text, *(a.message for a in attempts)]
    assert not any(FAKE_KEY in text for text in texts)


def test_missing_keys_name_the_variable(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider(model="m")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        AnthropicProvider(model="m")


def test_keys_and_base_urls_come_from_the_environment(fake_server, monkeypatch):
    server = fake_server(responder=responder)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_url)

    async def run():
        providers = [OpenAIProvider(model="m"), AnthropicProvider(model="m")]
        completions = [await p.complete(request()) for p in providers]
        for p in providers:
            await p.aclose()
        return completions

    assert [c.data for c in asyncio.run(run())] == [REPLY, REPLY]
    assert [r.path for r in server.requests] == ["/v1/chat/completions", "/v1/messages"]


def test_local_server_needs_no_key(fake_server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = fake_server(responder=responder)
    completion = complete_once(OpenAIProvider(model="m", base_url=server.openai_url), request())
    assert completion.data == REPLY


# --- header parsing -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [("20ms", 0.02), ("1s", 1), ("6m0s", 360), ("1h2m3.5s", 3723.5),
                                                ("0.5", 0.5), ("soon", None)])
def test_openai_reset_durations(value, seconds):
    assert go_seconds(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_headers():
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == pytest.approx(0.25)
    assert retry_after_s({"retry-after": "2"}) == 2
    assert 0 <= retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) <= 0.001  # a past date: now
    assert retry_after_s({}) is None


# --- the fake server bounds itself ---------------------------------------------------------------------------------
def test_fake_server_stops_after_its_request_budget_and_lifetime():
    with FakeServer(max_requests=2, responder=responder) as server:
        provider = openai_provider(server)

        async def run():
            completions = [await provider.complete(request()) for _ in range(2)]
            await provider.aclose()
            return completions

        assert [c.data for c in asyncio.run(run())] == [REPLY, REPLY]
        assert server.wait_stopped(5)
    with FakeServer(max_lifetime=0.2) as server:
        assert server.wait_stopped(5)


# --- the SDKs stay inside their provider module ------------------------------------------------------------------
def test_sdks_are_imported_only_by_their_provider():
    owners = {"openai": "agent/providers/openai.py", "anthropic": "agent/providers/anthropic.py"}
    found: dict[str, set[str]] = {"openai": set(), "anthropic": set()}
    for path in (ROOT / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                root = name.split(".")[0]
                if root in found:
                    found[root].add(path.relative_to(ROOT).as_posix())
    assert found == {sdk: {owner} for sdk, owner in owners.items()}


@pytest.mark.parametrize("query,expected", [("?api-version=2024-06-01", {"api-version": "2024-06-01"}),
                                            ("?api-version=", {"api-version": ""}),
                                            ("?api-version=1&flag=", {"api-version": "1", "flag": ""})])
def test_a_query_in_the_base_url_goes_on_each_request_not_in_the_path(query, expected):
    # a blank value (?api-version=) once kept the whole query inside the base path, where the SDK's "/"
    # rule turned it into part of every request's path
    client = OpenAIProvider(model="m", api_key="sk-test", base_url="http://127.0.0.1:9/v1" + query)._make_client()
    assert str(client.base_url) == "http://127.0.0.1:9/v1/"
    assert client.default_query == expected
