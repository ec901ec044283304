"""The host-side metering proxy between a sandboxed agent and its LLM provider.

Why a proxy: an installed CLI agent (Claude Code, Codex) hides its API calls; its logs undercount
output tokens and retries. Every call it makes goes through this proxy instead, which is the one
source of truth for turns, tokens, API errors and per-call timing. The sandbox reaches it over a unix
socket bind-mounted into the sandbox (plus `FORWARDER`, a tiny TCP relay inside, since neither CLI can
use a unix-socket base URL), and holds only a placeholder credential: the proxy drops whatever
credential the sandbox sent and puts in the host's key, so the key never enters the sandbox.

The key's power stays on the host too: for a sandboxed agent the proxy forwards only the calls its CLI
makes (`routes`: one method and path each, e.g. `POST /v1/messages`), and refuses, unforwarded, a call that
would have the provider act outside the wall for it: a server-side tool (web search or fetch, code
execution, file search, MCP), the account's stored state (files, stored responses or prompts), or work billed
after the call (background). Without that, "no network" and "no key" would hold for the sandbox while its
agent searched the web or read the account's files through the proxy (`refusal_for`).

Responses go back unchanged, chunk by chunk as they arrive (SSE included); the proxy only reads a copy
to find the usage. It asks the upstream for an uncompressed body (`accept-encoding: identity`) so the
usage can be read from the bytes it relays.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import threading
import time
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from bench.pricing import Price, turns_cost
from bench.specs import Limits
from bench.types import TurnUsage

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
CREDENTIAL_HEADERS = {"x-api-key", "authorization", "api-key"}
ERROR_EXCERPT_CHARS = 500
MAX_REQUEST_BYTES = 32 * 2**20  # the providers' own limit on a request; a larger body is refused unread (413)
PLACEHOLDER_KEY = "atebench-placeholder-not-a-key"
"""What a metered agent holds as its key: the proxy drops it. It cannot look like a real key, so a
real-key pattern found anywhere still means a leak."""
CLIENT_GONE = "the agent hung up before the reply came (its request timed out)"
UNFINISHED = "unfinished when the agent stopped"
CLIENT_TOOL_TYPES = {None, "custom", "function", "namespace", "local_shell"}
"""Tools the client runs (in the sandbox): Anthropic's custom tools (no type, or "custom"), OpenAI's function,
custom (free-form) and local_shell tools, and Codex's namespaces of function tools. Every other type is one
the provider runs on its own machines (web_search, web_fetch, code_execution, file_search, mcp, ...)."""
PROVIDER_SIDE_FIELDS = {
    "mcp_servers": "connects the provider to remote MCP servers",
    "container": "runs code in the provider's container",
    "background": "runs after the call, unmetered",
    "conversation": "reads the account's stored conversations",
    "previous_response_id": "reads a response stored in the account",
    "prompt": "reads a prompt stored in the account",
}
"""Request fields that have the provider act beyond this one metered call; refused when set."""


@dataclass
class CallUsage:
    """atebench's convention: `input` never includes cached tokens (bench/llm.py does the same)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class CallRecord:
    """One HTTP call through the proxy; a retried call is several records."""

    index: int
    method: str
    path: str
    started: float
    first_byte: float | None = None
    ended: float | None = None
    status: int | None = None
    model: str | None = None
    stream: bool = False
    usage: CallUsage | None = None
    retry_after: str | None = None
    error: str | None = None
    """Why the call failed: the upstream's error excerpt for a non-2xx status, or what broke on the way."""
    tool_calls: int = 0
    """Tool calls in the reply (tool_use blocks, function_call items)."""
    client_credential: list[str] = field(default_factory=list)
    """The names of the credential headers the sandbox sent (dropped); never their values."""
    refused: str | None = None
    """Why the harness did not forward this call (a limit was reached); such a call is no API error."""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300 and self.error is None

    @property
    def failed(self) -> bool:
        """An API error: an error status or a broken call, not a call the harness refused."""
        return not self.ok and self.refused is None


def usage_from_anthropic(usage: dict, into: CallUsage) -> None:
    """Anthropic's fields are atebench's; `message_delta` may repeat input counts, so only present keys count."""
    if "input_tokens" in usage and usage["input_tokens"] is not None:
        into.input = usage["input_tokens"]
    if "output_tokens" in usage and usage["output_tokens"] is not None:
        into.output = usage["output_tokens"]
    if usage.get("cache_read_input_tokens") is not None:
        into.cache_read = usage["cache_read_input_tokens"]
    if usage.get("cache_creation_input_tokens") is not None:
        into.cache_write = usage["cache_creation_input_tokens"]


def usage_from_openai(usage: dict) -> CallUsage:
    """OpenAI's input (Responses `input_tokens`, Chat `prompt_tokens`) includes cached tokens: split them out."""
    details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
    cache_read = details.get("cached_tokens") or 0
    cache_write = details.get("cache_write_tokens") or details.get("cache_creation_tokens") or 0
    total_in = usage.get("input_tokens", usage.get("prompt_tokens")) or 0
    output = usage.get("output_tokens", usage.get("completion_tokens")) or 0
    return CallUsage(
        input=max(total_in - cache_read - cache_write, 0), output=output, cache_read=cache_read, cache_write=cache_write
    )


class UsageReader:
    """Reads the usage out of a response body as its chunks go by (SSE or one JSON document)."""

    def __init__(self, path: str, content_type: str):
        self.anthropic = path.rstrip("/").endswith("/messages")
        self.sse = "text/event-stream" in content_type
        self.buffer = b""
        self.usage: CallUsage | None = None
        self.model: str | None = None
        self.tool_calls = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        if not self.sse:
            return
        *events, self.buffer = self.buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in events:
            data = b"\n".join(line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:"))
            if data and data != b"[DONE]":
                try:
                    self._event(json.loads(data))
                except json.JSONDecodeError:
                    continue  # not JSON (a comment, a keep-alive): carries no usage

    def finish(self) -> None:
        if self.sse:
            self.feed(b"\n\n")
            return
        try:
            body = json.loads(self.buffer or b"null")
        except json.JSONDecodeError:
            return
        if isinstance(body, dict) and any(k in body for k in ("usage", "choices", "content", "output")):
            usage = body["usage"] if isinstance(body.get("usage"), dict) else {}  # a reply without usage: 0 tokens
            self.model = body.get("model") or self.model
            blocks = body.get("content") if self.anthropic else body.get("output")
            self.tool_calls = sum(
                1
                for b in blocks or []
                if isinstance(b, dict) and b.get("type") in ("tool_use", "function_call", "custom_tool_call")
            )
            if not blocks and body.get("choices"):
                self.tool_calls = len(((body["choices"][0] or {}).get("message") or {}).get("tool_calls") or [])
            if self.anthropic:
                self.usage = CallUsage()
                usage_from_anthropic(usage, self.usage)
            else:
                self.usage = usage_from_openai(usage)

    def _event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model") or self.model
            self.usage = CallUsage()
            usage_from_anthropic(message.get("usage") or {}, self.usage)
        elif kind == "content_block_start" and (event.get("content_block") or {}).get("type") == "tool_use":
            self.tool_calls += 1
        elif kind == "response.output_item.done" and (event.get("item") or {}).get("type") in (
            "function_call",
            "custom_tool_call",
            "local_shell_call",
        ):
            self.tool_calls += 1
        elif kind == "message_delta" and self.usage is not None:
            usage_from_anthropic(event.get("usage") or {}, self.usage)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.get("response") or {}
            self.model = response.get("model") or self.model
            if isinstance(response.get("usage"), dict):
                self.usage = usage_from_openai(response["usage"])
        elif "usage" in event and isinstance(event["usage"], dict) and "prompt_tokens" in event["usage"]:
            self.usage = usage_from_openai(event["usage"])  # Chat Completions stream with include_usage


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def refusal_for(method: str, path: str, body: bytes, routes: tuple[str, ...]) -> str | None:
    """Why a sandboxed agent's call may not go upstream, or None. `routes` are "METHOD /path" strings (the
    query string is free; the path must match exactly, so `/v1/messages/../files` is not `/v1/messages`);
    empty routes let every call through (the builtin agent's calls start on the host)."""
    if not routes:
        return None
    asked = f"{method} {path.split('?', 1)[0]}"
    if asked not in routes:
        return f"{asked} is not a call this agent makes; the proxy forwards only {', '.join(routes)}"

    def unique(pairs: list) -> dict:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"a key appears twice: {sorted({k for k in keys if keys.count(k) > 1})}")
        return dict(pairs)

    try:
        request = json.loads(body or b"null", object_pairs_hook=unique)
    except ValueError as e:  # JSONDecodeError included: parsers that read a body differently must not disagree
        return f"the request body is not JSON with unique keys ({e})"
    if not isinstance(request, dict):
        return "the request body is not a JSON object"
    for name, why in PROVIDER_SIDE_FIELDS.items():
        if request.get(name):
            return f"the request sets {name!r}, which {why}: the agent's work stays in its sandbox"
    if _names_a_stored_file(request.get("messages"), request.get("input"), request.get("system")):
        return "the request reads a file stored in the account (a `file_id`): the agent's inputs come from its sandbox"
    tools = list(request.get("tools") or []) if isinstance(request.get("tools"), list) else []
    while tools:
        tool = tools.pop()
        kind = tool.get("type") if isinstance(tool, dict) else "?"
        if kind not in CLIENT_TOOL_TYPES:
            return (
                f"the request offers the model a {kind!r} tool, which the provider runs outside the sandbox (no "
                "network there); only tools the agent runs itself are forwarded"
            )
        if kind == "namespace" and isinstance(tool.get("tools"), list):
            tools += tool["tools"]
    return None


def _names_a_stored_file(*parts) -> bool:
    """Whether a content block points at a file stored in the provider account: Anthropic's document or
    image with a `{"type": "file"}` source or a container upload, OpenAI's input_file or input_image with a
    `file_id`. The CLIs send what they read inline, never such a reference. What the model wrote as a tool
    call's input is its own and is not read."""
    stack = list(parts)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack += item
        elif isinstance(item, dict):
            kind, source = item.get("type"), item.get("source")
            if kind == "container_upload" or (isinstance(source, dict) and source.get("type") == "file"):
                return True
            if kind in ("input_file", "input_image") and item.get("file_id"):
                return True
            stack += [
                value
                for key, value in item.items()
                if not (kind in ("tool_use", "function_call") and key in ("input", "arguments"))
            ]
    return False


class LLMProxy:
    """Listens on `socket_path`, forwards every request to `upstream` (a base URL, e.g.
    https://api.anthropic.com or http://127.0.0.1:PORT) with `inject` as its only credential headers,
    and appends one JSON line per call to `records_path`. `on_record(record)` runs after each call
    (the harness counts turns and tokens there). `admit(record)`, asked before a call is forwarded,
    returns None to let it through or the reason to refuse it (a limit is reached): the call is answered
    400 and recorded as refused, and the harness ends the agent. `routes` ("POST /v1/messages", ...) are the
    only calls forwarded, and only without provider-side tools or state (`refusal_for`): anything else is
    answered 403 and recorded as refused; the agent goes on."""

    def __init__(
        self,
        socket_path: Path | str,
        upstream: str,
        inject: dict[str, str],
        records_path: Path | str,
        on_record: Callable[[CallRecord], None] | None = None,
        admit: Callable[[CallRecord], str | None] | None = None,
        timeout_s: float = 600.0,
        routes: tuple[str, ...] = (),
    ):
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the LLM proxy's upstream must be an http(s) base URL, got {upstream!r}")
        self.upstream = parts
        self.prefix = parts.path.rstrip("/")
        self.inject = {name.lower(): value for name, value in inject.items()}
        self.socket_path = Path(socket_path)
        self.records_path = Path(records_path)
        self.on_record = on_record
        self.admit = admit
        self.timeout_s = timeout_s
        self.routes = tuple(routes)
        self.records: list[CallRecord] = []
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._closed = False
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self._server = _UnixServer(str(self.socket_path), _handler_for(self))
        os.chmod(self.socket_path, 0o666)  # the sandbox's user may differ from ours (user namespaces)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LLMProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving. A call still in flight (its agent gave up on it) is recorded now, as failed; its
        handler, if the upstream answers later, records nothing more."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.socket_path.unlink(missing_ok=True)
        with self._lock:
            self._closed = True
            unfinished = [r for r in self.records if r.ended is None]
            for record in unfinished:
                record.error, record.ended = record.error or UNFINISHED, time.time()
        for record in unfinished:
            self._write(record)

    def __enter__(self) -> LLMProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        return cls(self.upstream.hostname, self.upstream.port, timeout=self.timeout_s)

    def _new_record(self, method: str, path: str) -> CallRecord:
        with self._lock:
            record = CallRecord(index=len(self.records), method=method, path=path, started=time.time())
            self.records.append(record)
            return record

    def _finish(self, record: CallRecord) -> None:
        with self._lock:
            if self._closed:
                return  # recorded by close() as unfinished; the agent is gone
            record.ended = time.time()
        self._write(record)
        with self._ended:
            self._ended.notify_all()

    def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until every answered call is recorded: the agent may read a reply's last byte a moment
        before the proxy has finished its record. (A call whose answer has not begun is not waited for.)"""
        with self._ended:
            self._ended.wait_for(
                lambda: all(r.ended is not None for r in self.records if r.status is not None), timeout_s
            )

    def _write(self, record: CallRecord) -> None:
        line = json.dumps(asdict(record))
        with self._lock, open(self.records_path, "a") as f:
            f.write(line + "\n")
        if self.on_record:
            self.on_record(record)


def _handler_for(proxy: LLMProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass  # every call is a record instead

        def address_string(self) -> str:
            return "sandbox"  # a unix socket peer has no address

        def do_POST(self) -> None:
            self._forward()

        def do_GET(self) -> None:
            self._forward()

        def _forward(self) -> None:
            record = proxy._new_record(self.command, self.path)
            body = self._request_body()
            if body is None:
                record.refused = f"a request body over {MAX_REQUEST_BYTES} bytes (or an unreadable length)"
                self.close_connection = True
                self._reply_error(413, f"atebench: {record.refused}")
                proxy._finish(record)
                return
            try:
                request = json.loads(body) if body else {}
            except json.JSONDecodeError:
                request = {}
            if isinstance(request, dict):
                record.model = request.get("model") if isinstance(request.get("model"), str) else None
                record.stream = bool(request.get("stream"))
            headers = {}
            for name, value in self.headers.items():
                lower = name.lower()
                if lower in CREDENTIAL_HEADERS:
                    record.client_credential.append(lower)
                elif lower not in HOP_BY_HOP and lower != "accept-encoding":
                    headers[name] = value
            off_limits = refusal_for(self.command, self.path, body, proxy.routes)
            if off_limits:
                record.refused = off_limits
                self._reply_error(403, f"atebench: {off_limits}")
                proxy._finish(record)
                return
            refusal = proxy.admit(record) if proxy.admit else None
            if refusal:
                record.refused = refusal
                self._reply_error(400, f"atebench: {refusal}")
                proxy._finish(record)
                return
            headers.update(proxy.inject)
            headers["accept-encoding"] = "identity"
            headers["host"] = proxy.upstream.netloc
            upstream = proxy._connection()
            try:
                try:
                    upstream.request(self.command, proxy.prefix + self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                except (OSError, http.client.HTTPException) as e:
                    record.status, record.error = 502, f"upstream unreachable: {type(e).__name__}: {e}"
                    self._reply_error(502, record.error)
                    return
                self._relay(response, record)
            finally:
                upstream.close()
                proxy._finish(record)

        def _request_body(self) -> bytes | None:
            """The body, or None when it is over MAX_REQUEST_BYTES (the rest is left unread: the runner's memory
            is not the sandbox's to fill)."""
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                data = bytearray()
                while True:
                    try:
                        size = int(self.rfile.readline(64).split(b";")[0].strip() or b"0", 16)
                    except ValueError:
                        return None
                    if size == 0:
                        self.rfile.readline(64)
                        return bytes(data)
                    if len(data) + size > MAX_REQUEST_BYTES:
                        return None
                    data += self.rfile.read(size)
                    self.rfile.readline(64)
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                return None
            return self.rfile.read(length) if 0 <= length <= MAX_REQUEST_BYTES else None

        def _client_gone(self) -> bool:
            """The agent closed its end before any reply came: its request timed out. (A client never
            half-closes while it waits for a reply, so end-of-stream here means it gave up.)"""
            try:
                return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                return False
            except OSError:
                return True

        def _relay(self, response: http.client.HTTPResponse, record: CallRecord) -> None:
            record.status = response.status
            record.retry_after = response.getheader("retry-after")
            reader = UsageReader(self.path.split("?")[0], response.getheader("content-type") or "")
            if self._client_gone():
                record.error = CLIENT_GONE
                self.close_connection = True
                while chunk := response.read1(65536):
                    reader.feed(chunk)  # what the provider served (and bills) is still recorded
                reader.finish()
                record.usage, record.tool_calls = reader.usage, reader.tool_calls
                return
            length = response.getheader("content-length")
            chunked = length is None
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("content-length", length) if length is not None else self.send_header(
                "transfer-encoding", "chunked"
            )
            self.end_headers()
            try:
                while True:
                    chunk = response.read1(65536)
                    if record.first_byte is None:
                        record.first_byte = time.time()
                    if not chunk:
                        break
                    reader.feed(chunk)
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    self.wfile.flush()
                if chunked:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
            except (OSError, http.client.HTTPException) as e:
                record.error = f"stream broken: {type(e).__name__}: {e}"
                self.close_connection = True
            reader.finish()
            record.usage = reader.usage
            record.tool_calls = reader.tool_calls
            record.model = record.model or reader.model
            if not 200 <= response.status < 300 and record.error is None:
                record.error = reader.buffer[:ERROR_EXCERPT_CHARS].decode(errors="replace")

        def _reply_error(self, status: int, message: str) -> None:
            kind = {400: "invalid_request_error", 403: "permission_error"}.get(status, "api_error")
            data = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
            self.send_response_only(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


FORWARDER = '''\
"""atebench's relay inside the sandbox: 127.0.0.1:PORT -> the host proxy's unix socket (stdlib only)."""
import socket, sys, threading

def pipe(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass

def serve(conn, path):
    up = socket.socket(socket.AF_UNIX)
    try:
        up.connect(path)
    except OSError:
        conn.close(); return
    back = threading.Thread(target=pipe, args=(up, conn), daemon=True); back.start()
    pipe(conn, up); back.join(); conn.close(); up.close()

port, path = int(sys.argv[1]), sys.argv[2]
server = socket.create_server(("127.0.0.1", port))
print("atebench-forwarder listening", server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn, path), daemon=True).start()
'''
"""Written into the sandbox and run with its python3 before the agent starts (`python3 fwd.py PORT SOCKET`)."""

SANDBOX_RUN_DIR = "/run/atebench"
"""Where the proxy's folder (its socket and the forwarder) appears inside the sandbox, read-only."""
SOCKET_NAME = "llm.sock"
FORWARDER_NAME = "fwd.py"


def write_forwarder(run_dir: Path) -> None:
    """The forwarder next to the proxy's socket, so one read-only bind brings both into the sandbox."""
    (Path(run_dir) / FORWARDER_NAME).write_text(FORWARDER)


def relay_prelude(port: int, run_dir: str = SANDBOX_RUN_DIR, wait_s: float = 10.0) -> str:
    """Shell lines that start the forwarder on 127.0.0.1:`port` and wait until it listens. They must run in
    the same process tree as the agent: each spawned sandbox process has its own network namespace."""
    tries = int(wait_s / 0.05)
    return (
        f"python3 {run_dir}/{FORWARDER_NAME} {port} {run_dir}/{SOCKET_NAME} > /tmp/atebench-fwd.log 2>&1 &\n"
        f"for _ in $(seq {tries}); do grep -q listening /tmp/atebench-fwd.log 2>/dev/null && break; "
        f"sleep 0.05; done\n"
        f"grep -q listening /tmp/atebench-fwd.log || {{ echo 'atebench: the LLM forwarder did not start:'; "
        f"cat /tmp/atebench-fwd.log; exit 98; }}\n"
    )


def metered_turns(records: list[CallRecord]) -> list[TurnUsage]:
    """One turn per answered call (2xx, usage read, the agent got it): the one definition of a turn and
    its tokens, for every agent."""
    return [
        TurnUsage(
            r.started,
            r.ended or r.started,
            r.usage.input,
            r.usage.output,
            r.usage.cache_read,
            r.usage.cache_write,
            r.tool_calls,
            r.model,
        )
        for r in records
        if r.ok and r.usage is not None
    ]


def api_error_counts(records: list[CallRecord]) -> tuple[int, int]:
    """(API errors, retries): calls that failed (error status, broken stream, timed out), and those of
    them another call followed (the agent retried). A call the harness refused at a limit is neither."""
    called = [r for r in records if r.refused is None]
    failed = [r.failed for r in called]
    return sum(failed), sum(failed[:-1])


def limit_reached(
    limits: Limits, model: str | None, prices: dict[str, Price], turns: list[TurnUsage]
) -> tuple[str, str] | None:
    """(exit status, message) when the turns so far reach a limit, checked before the next API call:
    the same check for every agent. Wall time is each agent's own timeout."""
    tokens = sum(t.context_tokens + t.output_tokens for t in turns)
    cost = turns_cost(model, prices, turns)[0]
    if len(turns) >= limits.turns:
        return "limit_turns", f"{len(turns)} turns reached limits.turns={limits.turns}"
    if tokens >= limits.tokens:
        return "limit_tokens", f"{tokens} tokens reached limits.tokens={limits.tokens}"
    if cost is not None and cost >= limits.cost_usd:
        return "limit_cost", f"${cost:.4f} reached limits.cost_usd={limits.cost_usd}"
    return None


def call_event(record: CallRecord) -> dict:
    """The trajectory's `llm_call` event of one record, its usage named as the builtin agent's
    `assistant` events name theirs (so the report shows both alike)."""
    usage = record.usage
    return {
        "index": record.index,
        "status": record.status,
        "model": record.model,
        "path": record.path,
        "started": record.started,
        "first_byte": record.first_byte,
        "ended": record.ended,
        "usage": {
            "input_tokens": usage.input,
            "output_tokens": usage.output,
            "cache_read_tokens": usage.cache_read,
            "cache_write_tokens": usage.cache_write,
        }
        if usage
        else None,
        "tool_calls": record.tool_calls,
        "refused": record.refused,
        "error": record.error,
    }
