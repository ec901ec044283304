"""A scripted stand-in for a remote LLM, speaking the real Anthropic Messages (JSON, and SSE for
`stream: true`), OpenAI Chat Completions and OpenAI Responses (SSE) wire formats on 127.0.0.1, so the
official SDKs, our agents and the installed CLIs (Claude Code, Codex) run unchanged in tests.

Why a real HTTP server: the remote model is the one thing tests may replace, and replacing it at the
wire keeps the SDKs, retries, headers and usage parsing under test.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

# Shapes of real provider keys; a test key must never look like one.
REAL_KEY_PATTERN = re.compile(r"(?:sk-ant-api\d\d-|sk-proj-|sk-svcacct-|sk-)[A-Za-z0-9_\-]{32,}")


@dataclass
class Reply:
    """One scripted assistant reply. `tool_calls` are (name, arguments) pairs; a str argument is sent
    verbatim as OpenAI's JSON-encoded arguments (to script malformed JSON)."""

    text: str = ""
    tool_calls: list[tuple[str, dict | str]] = field(default_factory=list)
    input_tokens: int = 100
    output_tokens: int = 20
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    delay_s: float = 0.0
    on_serve: Callable[[], None] | None = None  # runs before the reply goes out: changes the world mid-trial


@dataclass
class Failure:
    """One scripted HTTP error, e.g. a 429 with retry-after or a 500."""

    status: int
    message: str = "scripted failure"
    retry_after_s: float | None = None
    delay_s: float = 0.0


@dataclass
class Malformed:
    """A 200 reply whose body is not what the API promises (a broken proxy, a bad local server)."""

    body: dict


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: dict


ROUTES = ("/v1/messages", "/v1/chat/completions", "/v1/responses")


def tool_results_in(path: str, body: dict) -> int:
    """How many tool results the request carries: the step of a conversation, without server state
    (each CLI resends the whole history every call)."""
    if path == "/v1/messages":
        return sum(
            1
            for m in body.get("messages", [])
            if isinstance(m.get("content"), list)
            for block in m["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
    if path == "/v1/responses":
        items = body.get("input") if isinstance(body.get("input"), list) else []
        return sum(1 for item in items if isinstance(item, dict) and item.get("type") == "function_call_output")
    return sum(1 for m in body.get("messages", []) if m.get("role") == "tool")


class FakeLLMServer:
    """Serves `script` whichever API the request speaks.

    By default one item per request, in order. With `by_step=True` the item is chosen by the request's
    step (`tool_results_in`): `script[step]` is an item, or a list of items served in order to the
    successive requests of that step (e.g. `[Failure(429), Reply(...)]` for a retried call). A client's
    extra requests (a retry, a side call) then cannot shift the rest of the script.

    `script` may also be a dict of route to script (`{"/v1/messages": [...], "/v1/responses": [...]}`):
    each API then has its own, so two agents of one run (Claude Code and Codex) share one server."""

    def __init__(self, script: list | dict[str, list], by_step: bool = False):
        if isinstance(script, dict):
            unknown = sorted(set(script) - set(ROUTES))
            if unknown:
                raise ValueError(f"FakeLLMServer: no route {unknown}; routes are {ROUTES}")
        self.scripts = {route: list(s) for route, s in script.items()} if isinstance(script, dict) else None
        self.script = [] if self.scripts is not None else list(script)
        self.by_step = by_step
        self.requests: list[ReceivedRequest] = []
        self.served: list[tuple[int, Reply | Failure | Malformed]] = []
        """(request index, item) for every item served, in order: what usage a meter should have seen."""
        self.sent_bodies: list[bytes] = []
        """Every response body as sent (SSE de-chunked), in order: what a relay must pass on unchanged."""
        self._served_per_step: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def remaining(self) -> int:
        """Items not served yet (in step mode: over all steps)."""
        with self._lock:
            scripts = list(self.scripts.values()) if self.scripts is not None else [self.script]
            if not self.by_step:
                return sum(len(script) for script in scripts)
            total = sum(len(step) if isinstance(step, list) else 1 for script in scripts for step in script)
            return total - sum(self._served_per_step.values())

    def served_replies(self, path: str | None = None) -> list[Reply]:
        """The replies (not failures) served, in order, to requests on `path` (default: any): the usage a
        meter of this server must report."""
        return [
            item
            for i, item in self.served
            if isinstance(item, Reply) and (path is None or self.requests[i].path == path)
        ]

    def leaked_real_keys(self) -> list[str]:
        """Credentials or bodies received that look like a real provider key."""
        found = []
        for request in self.requests:
            text = json.dumps(request.headers) + json.dumps(request.body)
            found += REAL_KEY_PATTERN.findall(text)
        return found

    def _next(self, request: ReceivedRequest) -> Reply | Failure | Malformed | None:
        with self._lock:
            self.requests.append(request)
            script = self.script if self.scripts is None else self.scripts.get(request.path, [])
            if not self.by_step:
                item = script.pop(0) if script else None
            else:
                step = tool_results_in(request.path, request.body)
                items = script[step] if step < len(script) else []
                items = items if isinstance(items, list) else [items]
                key = (request.path if self.scripts is not None else "", step)
                n = self._served_per_step.get(key, 0)
                item = items[n] if n < len(items) else None
                if item is not None:
                    self._served_per_step[key] = n + 1
            if item is not None:
                self.served.append((len(self.requests) - 1, item))
            return item


def _handler_for(server: FakeLLMServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            if path not in ROUTES:
                return self._send(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})
            request = ReceivedRequest(path, {k.lower(): v for k, v in self.headers.items()}, body)
            item = server._next(request)
            anthropic = path == "/v1/messages"
            stream = bool(body.get("stream"))
            if item is None:
                return self._send(400, _error_body(anthropic, 400, "fake LLM: the script is exhausted"))
            if isinstance(item, Malformed):
                return self._send(200, item.body)
            time.sleep(item.delay_s)
            if isinstance(item, Failure):
                headers = {}
                if item.retry_after_s is not None:
                    headers = {
                        "retry-after": f"{item.retry_after_s:g}",
                        "retry-after-ms": str(int(item.retry_after_s * 1000)),
                    }
                return self._send(item.status, _error_body(anthropic, item.status, item.message), headers)
            model = body.get("model", "fake")
            if item.on_serve:
                item.on_serve()
            if path == "/v1/responses":
                response = _openai_response(item, model)
                if not stream:
                    return self._send(200, response)
                return self._send_events(_responses_events(response))
            if anthropic and stream:
                return self._send_events(_anthropic_events(item, model))
            self._send(200, _anthropic_message(item, model) if anthropic else _openai_completion(item, model))

        def _send_events(self, events: list[tuple[str, dict]]) -> None:
            """Server-sent events, one chunk per event (chunked transfer, as the real APIs stream)."""
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
            self.end_headers()
            sent = b""
            for name, data in events:
                chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
                sent += chunk
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            server.sent_bodies.append(sent)

        def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_{uuid.uuid4().hex[:12]}")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            server.sent_bodies.append(data)

    return Handler


def _error_body(anthropic: bool, status: int, message: str) -> dict:
    kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(status, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _anthropic_message(reply: Reply, model: str) -> dict:
    content = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [
        {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": args}
        for name, args in reply.tool_calls
    ]
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cache_read_tokens,
        },
    }


def _openai_completion(reply: Reply, model: str) -> dict:
    message: dict = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:20]}",
                "type": "function",
                "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
            }
            for name, args in reply.tool_calls
        ]
    prompt_tokens = reply.input_tokens + reply.cache_read_tokens + reply.cache_write_tokens
    details = {"cached_tokens": reply.cache_read_tokens}
    if reply.cache_write_tokens:
        details["cache_write_tokens"] = reply.cache_write_tokens
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:20]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt_tokens + reply.output_tokens,
            "prompt_tokens_details": details,
        },
    }


def _split(text: str, parts: int = 3) -> list[str]:
    """`text` in up to `parts` pieces cut anywhere, as real streams cut JSON and text mid-token."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _anthropic_events(reply: Reply, model: str) -> list[tuple[str, dict]]:
    """The Messages API stream: message_start (input usage, output 1), one start/delta/stop per block,
    message_delta with the final output tokens, message_stop."""
    events: list[tuple[str, dict]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": f"msg_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": reply.input_tokens,
                        "cache_creation_input_tokens": reply.cache_write_tokens,
                        "cache_read_input_tokens": reply.cache_read_tokens,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    blocks: list[tuple[dict, list[dict]]] = []
    if reply.text:
        blocks.append(
            ({"type": "text", "text": ""}, [{"type": "text_delta", "text": piece} for piece in _split(reply.text)])
        )
    for name, args in reply.tool_calls:
        raw = args if isinstance(args, str) else json.dumps(args)
        blocks.append(
            (
                {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": {}},
                [{"type": "input_json_delta", "partial_json": piece} for piece in _split(raw)],
            )
        )
    for index, (start, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _openai_response(reply: Reply, model: str) -> dict:
    """A Responses API response object. `usage.input_tokens` includes the cached tokens, as OpenAI's does;
    the Responses API has no cache-write count, so `cache_write_tokens` is billed as plain input here."""
    output: list[dict] = []
    if reply.text:
        output.append(
            {
                "type": "message",
                "id": f"msg_{uuid.uuid4().hex[:20]}",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}],
            }
        )
    for name, args in reply.tool_calls:
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{uuid.uuid4().hex[:20]}",
                "call_id": f"call_{uuid.uuid4().hex[:20]}",
                "name": name,
                "status": "completed",
                "arguments": args if isinstance(args, str) else json.dumps(args),
            }
        )
    input_tokens = reply.input_tokens + reply.cache_read_tokens + reply.cache_write_tokens
    return {
        "id": f"resp_{uuid.uuid4().hex[:20]}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": reply.cache_read_tokens},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + reply.output_tokens,
        },
    }


def _responses_events(response: dict) -> list[tuple[str, dict]]:
    """The Responses API stream: created, each output item added (text deltas for a message) and done,
    completed with the usage."""
    seq = iter(range(1_000_000))
    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[tuple[str, dict]] = [
        ("response.created", {"type": "response.created", "sequence_number": next(seq), "response": pending})
    ]
    for index, item in enumerate(response["output"]):
        if item["type"] == "message":
            text = item["content"][0]["text"]
            events.append(
                (
                    "response.output_item.added",
                    {
                        "type": "response.output_item.added",
                        "sequence_number": next(seq),
                        "output_index": index,
                        "item": {**item, "status": "in_progress", "content": []},
                    },
                )
            )
            for piece in _split(text):
                events.append(
                    (
                        "response.output_text.delta",
                        {
                            "type": "response.output_text.delta",
                            "sequence_number": next(seq),
                            "item_id": item["id"],
                            "output_index": index,
                            "content_index": 0,
                            "delta": piece,
                        },
                    )
                )
        else:
            events.append(
                (
                    "response.output_item.added",
                    {
                        "type": "response.output_item.added",
                        "sequence_number": next(seq),
                        "output_index": index,
                        "item": {**item, "status": "in_progress", "arguments": ""},
                    },
                )
            )
        events.append(
            (
                "response.output_item.done",
                {
                    "type": "response.output_item.done",
                    "sequence_number": next(seq),
                    "output_index": index,
                    "item": item,
                },
            )
        )
    events.append(
        ("response.completed", {"type": "response.completed", "sequence_number": next(seq), "response": response})
    )
    return events
