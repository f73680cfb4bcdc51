"""A loopback LLM server that speaks just enough OpenAI and Anthropic for the real SDKs, with faults on demand.

The SDKs (openai 3.x, anthropic 2.x) use httpx2, which respx cannot intercept, so tests and benchmarks talk
to this real HTTP server on 127.0.0.1 instead. It is bounded: it stops itself after `max_requests` requests
or `max_lifetime` seconds, and a hang never outlasts `hang_s`.

    with FakeServer(latency=0.01, faults=["429", None]) as server:
        client = openai.AsyncOpenAI(base_url=server.openai_url, api_key="k", max_retries=0)
        ...
        assert server.counts["429"] == 1

In a test module, `from tests.fakeserver import fake_server_fixture  # noqa: F401` registers the
`fake_server` fixture: `server = fake_server(latency=0.01, rpm=600)`; every server stops when the test ends.

Routes: POST /v1/chat/completions and /chat/completions (OpenAI), POST /v1/messages (Anthropic),
GET /_stats (counts as JSON, for a server run in another process: `python -m tests.fakeserver --help`).

Faults (a list per request index, or seeded probabilities per kind): "429", "500", "529", "hang", "drop",
"malformed", "length", "refuse_json_schema", "quota" (OpenAI's insufficient_quota 429), and for
non-retryable paths "400", "401".

Like llama-cpp-python's server (`FakeServer.like_llama_cpp()`): response_format json_schema is answered with
HTTP 500 (its pydantic validation error wrapped as a server error); {"type": "json_object", "schema": ...}
is accepted (response format "json_object+schema": the grammar-constrained mode), and the responder sees
the schema, so a small-model responder (tests/responders.py) follows it only when it is there.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "529", "hang", "drop", "malformed", "length", "refuse_json_schema", "400", "401", "quota")
# llama-cpp-python 0.3.36's reply to response_format json_schema, as probed on the real server: HTTP 500,
# type internal_server_error, wrapping a request validation error (the traceback's file path left out)
LLAMA_CPP_REFUSAL = ("1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
                     "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', 'ctx': "
                     "{'expected': \"'text' or 'json_object'\"}}\n\n    POST /v1/chat/completions")
AUTH_HEADERS = ("authorization", "x-api-key")
Responder = Callable[[dict[str, Any]], str]


@dataclass
class Recorded:
    index: int
    time: float                  # time.monotonic() at arrival
    path: str
    headers: dict[str, str]      # lower-case names; auth header values replaced by "<redacted>"
    body: Any
    outcome: str = ""            # "ok" or the fault / status that was served
    raw: bytes = b""             # the body's bytes as they came (the wire tests compare them)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # clients hang up on purpose in the fault tests (timeouts, dropped connections): not worth a traceback
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


@dataclass
class FakeServer:
    latency: float = 0.0
    rpm: int | None = None                # requests per minute, enforced over a sliding window
    window_s: float = 60.0                # the window; the limit per window is rpm * window_s / 60
    faults: list[str | None] | None = None            # fault per request index (None = serve normally)
    fault_rates: dict[str, float] | None = None        # or: probability per fault kind, drawn with `seed`
    seed: int = 0
    responder: Responder | None = None
    # what response_format it accepts; "json_object+schema" is {"type": "json_object", "schema": ...}
    response_formats: tuple[str, ...] = ("json_schema", "json_object+schema", "json_object")
    refusal_status: int = 400             # the status of a refused response_format (llama-cpp-python: 500)
    hang_s: float = 3.0
    retry_after_s: float | None = None    # fixed retry-after for planned "429" faults (default 0.05 s)
    max_requests: int = 10_000
    max_lifetime: float = 120.0
    tokens_per_minute: int = 10_000_000   # only reported in headers, not enforced
    bad_request_message: str = "fake 400"
    requests: list[Recorded] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)

    @classmethod
    def like_llama_cpp(cls, **config: Any) -> FakeServer:
        """A server that answers as llama-cpp-python's does (see the module docstring)."""
        return cls(response_formats=("json_object+schema", "json_object"), refusal_status=500, **config)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._rng = random.Random(self.seed)
        self._window: collections.deque[float] = collections.deque()  # arrival times of admitted requests
        self._seen_systems: set[tuple[str, str]] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_url(self) -> str:
        return self.url

    def start(self) -> FakeServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._timer = threading.Timer(self.max_lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            first = not self._stopping.is_set()
            self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        if first and self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_stopped(self, timeout: float) -> bool:
        return self._stopping.wait(timeout)

    # --- decisions (called from handler threads) ------------------------------------------------------
    def _admit(self, path: str, headers: dict[str, str], body: Any) -> tuple[Recorded, str, float | None]:
        """Record the request and decide its outcome: a fault kind, "429" from the window, or "ok"."""
        now = time.monotonic()
        with self._lock:
            index = len(self.requests)
            rec = Recorded(index, now, path, headers, body)
            self.requests.append(rec)
            if index >= self.max_requests:
                rec.outcome = "exhausted"
                return rec, "exhausted", None
            if self.rpm is not None:
                per_window = max(1, int(self.rpm * self.window_s / 60))
                while self._window and self._window[0] <= now - self.window_s:
                    self._window.popleft()
                if len(self._window) >= per_window:
                    rec.outcome = "429"
                    return rec, "429", self._window[0] + self.window_s - now
            fault = self._planned_fault(index)
            if self.rpm is not None:
                self._window.append(now)
            rec.outcome = fault or "ok"
            return rec, rec.outcome, None

    def _planned_fault(self, index: int) -> str | None:
        if self.faults is not None:
            return self.faults[index] if index < len(self.faults) else None
        for kind, p in (self.fault_rates or {}).items():
            if self._rng.random() < p:
                return kind
        return None

    def rate_state(self) -> tuple[int, int, float]:
        """(limit per minute, remaining in the window, seconds until the window is empty again)."""
        with self._lock:
            if self.rpm is None:
                return 1_000_000, 1_000_000 - 1, 0.0
            per_window = max(1, int(self.rpm * self.window_s / 60))
            now = time.monotonic()
            remaining = max(0, per_window - len(self._window))
            reset = (self._window[-1] + self.window_s - now) if self._window else 0.0
            return self.rpm, remaining, max(0.0, reset)

    def finish(self, rec: Recorded, outcome: str) -> None:
        with self._lock:
            rec.outcome = outcome
            self.counts[outcome] += 1
        if len(self.requests) >= self.max_requests:
            threading.Thread(target=self.stop, daemon=True).start()

    def cached_part(self, api: str, system: str) -> int:
        """Tokens of a system prompt seen before (a prompt cache hit), else 0 and remember it."""
        with self._lock:
            if (api, system) in self._seen_systems:
                return approx_tokens(system)
            self._seen_systems.add((api, system))
            return 0

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": len(self.requests), "counts": dict(self.counts), "max_in_flight": self.max_in_flight}


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


# --- the HTTP side --------------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    fake: FakeServer
    api: str | None = None
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs: the SDK's connection pool reuses sockets
    # TCP_NODELAY, as real API servers: the reply's headers and body are two writes, and with Nagle's algorithm
    # the body waited for the client's delayed ACK of the headers, ~40 ms a call at zero latency
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr access logs
        pass

    def do_GET(self) -> None:
        if self.path == "/_stats":
            self._send(200, self.fake.stats())
        else:
            self._send(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        fake = self.fake
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        headers = {k.lower(): ("<redacted>" if k.lower() in AUTH_HEADERS else v) for k, v in self.headers.items()}
        path = self.path.split("?")[0]
        api = self.api = "anthropic" if path.endswith("/messages") else "openai"
        if not path.endswith(("/chat/completions", "/messages")):
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        rec, outcome, retry_after = fake._admit(path, headers, body)
        rec.raw = raw
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            self._serve(api, rec, outcome, retry_after)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    def _serve(self, api: str, rec: Recorded, outcome: str, retry_after: float | None) -> None:
        fake = self.fake
        body = rec.body if isinstance(rec.body, dict) else {}
        if outcome == "exhausted":
            fake.finish(rec, "exhausted")
            self._send(503, _error(api, "fake server request budget exhausted", "api_error"))
            return
        if outcome == "429":
            wait = retry_after if retry_after is not None else (fake.retry_after_s or 0.05)
            fake.finish(rec, "429")
            extra = {"retry-after-ms": f"{wait * 1000:.0f}", "retry-after": str(max(0, round(wait + 0.4999)))}
            self._send(429, _error(api, "Rate limit reached for requests", "rate_limit_error"), extra)
            return
        if fake.latency:
            fake._stopping.wait(fake.latency)
        if outcome == "hang":
            fake.finish(rec, "hang")
            fake._stopping.wait(fake.hang_s)  # the client should time out first; bounded so threads end
        if outcome == "drop":
            fake.finish(rec, "drop")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if outcome == "quota":
            fake.finish(rec, "quota")
            self._send(429, {"error": {"message": "You exceeded your current quota, please check your plan and "
                                       "billing details.", "type": "insufficient_quota", "param": None,
                                       "code": "insufficient_quota"}})
            return
        status = {"500": 500, "529": 529, "400": 400, "401": 401}.get(outcome)
        if status is not None:
            fake.finish(rec, outcome)
            kinds = {500: "api_error", 529: "overloaded_error", 400: "invalid_request_error",
                     401: "authentication_error"}
            message = {401: "Incorrect API key provided: " + self._auth_value(),
                       400: fake.bad_request_message}.get(status, f"fake {outcome}")
            self._send(status, _error(api, message, kinds[status]))
            return
        fmt = (body.get("response_format") or {}).get("type", "text") if api == "openai" else "tool"
        if fmt == "json_object" and "schema" in (body.get("response_format") or {}):
            fmt = "json_object+schema"
        if api == "openai" and fmt != "text" and (
            fmt not in fake.response_formats or (outcome == "refuse_json_schema" and fmt == "json_schema")
        ):
            fake.finish(rec, "refuse_" + fmt)
            if fake.refusal_status == 500:
                self._send(500, _error(api, LLAMA_CPP_REFUSAL, "internal_server_error"))
            elif fmt == "json_object+schema":   # a server that knows json_object but not its schema field
                self._send(400, _error(api, "response_format.schema: extra fields not permitted",
                                       "invalid_request_error"))
            else:
                self._send(fake.refusal_status, _error(
                    api, f"response_format of type '{fmt}' is not supported by this model", "invalid_request_error"))
            return
        if outcome == "malformed":
            fake.finish(rec, "malformed")
            self._send_raw(200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "{\\"a\\"', {})
            return
        content = (fake.responder or default_responder)(body)
        truncated = outcome == "length"
        if truncated:
            content = content[: max(1, len(content) // 2)]
        reply = _openai_reply(fake, body, content, fmt, truncated) if api == "openai" else \
            _anthropic_reply(fake, body, content, truncated)
        if outcome != "hang":
            fake.finish(rec, "length" if truncated else "ok")
        self._send(200, reply)

    def _auth_value(self) -> str:
        # Echo the key like OpenAI's 401 does ("Incorrect API key provided: sk-..."), so tests can check that
        # the client never repeats it.
        value = self.headers.get("authorization") or self.headers.get("x-api-key") or ""
        return value.removeprefix("Bearer ")

    def _send(self, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), extra or {})

    def _send_raw(self, status: int, data: bytes, extra: dict[str, str]) -> None:
        if getattr(self, "api", None):  # every API reply carries rate-limit headers, errors included
            extra = {**_rate_headers(self.api, self.fake), **extra}
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout) and closed the socket
            self.close_connection = True


def _error(api: str, message: str, kind: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _go_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:.3g}s" if minutes else f"{secs:.3g}s"


def _rate_headers(api: str, fake: FakeServer) -> dict[str, str]:
    limit, remaining, reset = fake.rate_state()
    tpm = fake.tokens_per_minute  # token limits are reported, not enforced
    if api == "openai":
        return {
            "x-ratelimit-limit-requests": str(limit), "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": _go_duration(reset),
            "x-ratelimit-limit-tokens": str(tpm), "x-ratelimit-remaining-tokens": str(tpm),
            "x-ratelimit-reset-tokens": "6m0s",
        }
    at = (datetime.now(UTC) + timedelta(seconds=reset)).strftime("%Y-%m-%dT%H:%M:%SZ")
    soon = (datetime.now(UTC) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"anthropic-ratelimit-requests-limit": str(limit),
               "anthropic-ratelimit-requests-remaining": str(remaining),
               "anthropic-ratelimit-requests-reset": at}
    for kind in ("input-tokens", "output-tokens", "tokens"):
        headers[f"anthropic-ratelimit-{kind}-limit"] = str(tpm)
        headers[f"anthropic-ratelimit-{kind}-remaining"] = str(tpm)
        headers[f"anthropic-ratelimit-{kind}-reset"] = soon
    return headers


def _openai_reply(fake: FakeServer, body: dict[str, Any], content: str, fmt: str, truncated: bool) -> dict:
    messages = body.get("messages") or []
    system = next((str(m.get("content", "")) for m in messages if m.get("role") in ("system", "developer")), "")
    if fmt == "text" and not truncated:
        content = f"Here is the JSON you asked for:\n```json\n{content}\n```\nLet me know if you need more."
    prompt = approx_tokens(json.dumps(messages))
    completion = approx_tokens(content)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                     "finish_reason": "length" if truncated else "stop", "logprobs": None}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                  "prompt_tokens_details": {"cached_tokens": min(prompt, fake.cached_part("openai", system))}},
    }


def _anthropic_reply(fake: FakeServer, body: dict[str, Any], content: str, truncated: bool) -> dict:
    system = body.get("system") or ""
    blocks = system if isinstance(system, list) else [{"type": "text", "text": str(system)}]
    cacheable = "".join(b.get("text", "") for b in blocks if b.get("cache_control"))
    cached = fake.cached_part("anthropic", cacheable) if cacheable else 0
    created = 0 if cached or not cacheable else approx_tokens(cacheable)
    total_in = approx_tokens(json.dumps(blocks) + json.dumps(body.get("messages", [])))
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {}
    if truncated or not tools:
        out_blocks = [{"type": "text", "text": content}]
    else:
        name = choice.get("name") or tools[0].get("name", "tool")
        out_blocks = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:12], "name": name,
                       "input": json.loads(content)}]
    return {
        "id": "msg_" + uuid.uuid4().hex[:12], "type": "message", "role": "assistant",
        "model": body.get("model", "fake"), "content": out_blocks,
        "stop_reason": "max_tokens" if truncated else ("tool_use" if tools else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": max(1, total_in - cached - created), "output_tokens": approx_tokens(content),
                  "cache_creation_input_tokens": created, "cache_read_input_tokens": cached},
    }


# --- default content ------------------------------------------------------------------------------------
def request_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for: response_format, the forced tool, or a ```json block in the prompt."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return fmt.get("json_schema", {}).get("schema")
    if fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
        return fmt["schema"]
    for tool in body.get("tools") or []:
        if "input_schema" in tool:
            return tool["input_schema"]
    system = body.get("system") or ""
    texts = [b.get("text", "") for b in system] if isinstance(system, list) else [str(system)]
    texts += [str(m.get("content", "")) for m in body.get("messages") or []]
    for text in texts:
        for block in re.findall(r"```json\s*(\{.*?\})\s*```", text, re.S):
            with contextlib.suppress(ValueError):
                return json.loads(block)
    return None


def minimal_instance(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A small deterministic value valid for a simple JSON schema.

    Hand-rolled: hypothesis-jsonschema draws random, slow values; a fake server wants one cheap fixed answer.
    """
    root = root or schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return minimal_instance(node, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return minimal_instance(schema[key][0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(sub, root) for name, sub in props.items()}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), root) for _ in range(schema.get("minItems", 1))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return True
    return None


def default_responder(body: dict[str, Any]) -> str:
    schema = request_schema(body)
    return json.dumps(minimal_instance(schema) if schema else {"ok": True})


# --- pytest fixture and a separate-process mode ------------------------------------------------------------
try:
    import pytest

    @pytest.fixture(name="fake_server")
    def fake_server_fixture() -> Iterator[Callable[..., FakeServer]]:
        """`fake_server(**config)` starts a FakeServer; all of them stop when the test ends."""
        started: list[FakeServer] = []

        def start(**config: Any) -> FakeServer:
            config.setdefault("max_lifetime", 30.0)
            config.setdefault("max_requests", 500)
            server = FakeServer(**config).start()
            started.append(server)
            return server

        yield start
        for server in started:
            server.stop()
except ImportError:  # benchmarks may run without pytest
    pass


def main(argv: list[str] | None = None) -> None:
    """Serve in this process until the lifetime or request budget runs out; prints `READY <url>` first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--rpm", type=int, default=None)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--max-lifetime", type=float, default=600.0)
    parser.add_argument("--simulated", action="store_true",
                        help="answer with the simulated provider's examples (read from the prompt), not stubs")
    args = parser.parse_args(argv)
    responder = None
    if args.simulated:
        from tests.responders import simulated_responder

        responder = simulated_responder(seed=1)
    server = FakeServer(latency=args.latency, rpm=args.rpm, window_s=args.window, responder=responder,
                        max_requests=args.max_requests, max_lifetime=args.max_lifetime).start()
    print("READY", server.url, flush=True)
    try:
        server.wait_stopped(args.max_lifetime + 1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
