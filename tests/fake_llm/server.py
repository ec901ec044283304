"""A scripted stand-in for a remote LLM, speaking the real Anthropic Messages and OpenAI Chat
Completions wire formats on 127.0.0.1, so the official SDKs and our agents run unchanged in tests.

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
from typing import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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


class FakeLLMServer:
    """Serves `script` in order, one item per request, whichever API the request speaks."""

    def __init__(self, script: list[Reply | Failure | Malformed]):
        self.script = list(script)
        self.requests: list[ReceivedRequest] = []
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
        with self._lock:
            return len(self.script)

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
            return self.script.pop(0) if self.script else None


def _handler_for(server: FakeLLMServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            if path not in ("/v1/messages", "/v1/chat/completions"):
                return self._send(404, {"error": {"type": "not_found_error", "message": f"no route {path}"}})
            request = ReceivedRequest(path, {k.lower(): v for k, v in self.headers.items()}, body)
            item = server._next(request)
            anthropic = path == "/v1/messages"
            if item is None:
                return self._send(400, _error_body(anthropic, 400, "fake LLM: the script is exhausted"))
            if isinstance(item, Malformed):
                return self._send(200, item.body)
            time.sleep(item.delay_s)
            if isinstance(item, Failure):
                headers = {}
                if item.retry_after_s is not None:
                    headers = {"retry-after": f"{item.retry_after_s:g}", "retry-after-ms": str(int(item.retry_after_s * 1000))}
                return self._send(item.status, _error_body(anthropic, item.status, item.message), headers)
            model = body.get("model", "fake")
            if item.on_serve:
                item.on_serve()
            self._send(200, _anthropic_message(item, model) if anthropic else _openai_completion(item, model))

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

    return Handler


def _error_body(anthropic: bool, status: int, message: str) -> dict:
    kind = {429: "rate_limit_error", 529: "overloaded_error", 400: "invalid_request_error"}.get(status, "api_error")
    if anthropic:
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _anthropic_message(reply: Reply, model: str) -> dict:
    content = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": args}
                for name, args in reply.tool_calls]
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None,
        "usage": {
            "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens, "cache_read_input_tokens": reply.cache_read_tokens,
        },
    }


def _openai_completion(reply: Reply, model: str) -> dict:
    message: dict = {"role": "assistant", "content": reply.text or None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:20]}", "type": "function", "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
            for name, args in reply.tool_calls
        ]
    prompt_tokens = reply.input_tokens + reply.cache_read_tokens + reply.cache_write_tokens
    details = {"cached_tokens": reply.cache_read_tokens}
    if reply.cache_write_tokens:
        details["cache_write_tokens"] = reply.cache_write_tokens
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:20]}", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens, "completion_tokens": reply.output_tokens,
            "total_tokens": prompt_tokens + reply.output_tokens,
            "prompt_tokens_details": details,
        },
    }
