"""The fake server's streaming (checked by the official SDKs) and the metering proxy against it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import openai
import pytest

from bench.llm_proxy import (
    FORWARDER,
    SANDBOX_RUN_DIR,
    LLMProxy,
    limit_reached,
    metered_turns,
    refusal_for,
    relay_prelude,
    write_forwarder,
)
from bench.pricing import load_prices
from bench.sandbox.errors import SandboxError
from bench.sandbox.local import Bind, LocalSandbox, bwrap_available, descendants
from bench.specs import Limits
from tests.fake_llm import Failure, FakeLLMServer, Reply

HOST_KEY = "host-only-test-key-4c2e9a71"
PLACEHOLDER = "atebench-placeholder"
HI = [{"role": "user", "content": "hi"}]
EDIT = ("Edit", {"file_path": "/w/a.py", "old_string": "x = 1", "new_string": "x = 2"})


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over the proxy's unix socket, as the in-sandbox forwarder connects."""

    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.socket_path)


def post(proxy: LLMProxy, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes, list[int]]:
    """(status, headers, body, chunk sizes as read) of one call through the proxy."""
    conn = UnixHTTPConnection(str(proxy.socket_path))
    conn.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json", **(headers or {})})
    response = conn.getresponse()
    chunks = []
    while chunk := response.read1(65536):
        chunks.append(chunk)
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, b"".join(chunks), [len(c) for c in chunks]


@pytest.fixture
def proxy_for(tmp_path):
    proxies = []

    def make(server: FakeLLMServer, inject: dict | None = None, **options) -> LLMProxy:
        proxy = LLMProxy(
            tmp_path / "run" / "llm.sock",
            server.url,
            inject or {"x-api-key": HOST_KEY},
            tmp_path / "calls.jsonl",
            **options,
        ).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# --- the fake server's streams, read by the official SDKs ---


def test_anthropic_stream_is_what_the_sdk_expects():
    script = [
        Reply(
            text="let me edit",
            tool_calls=[EDIT],
            input_tokens=120,
            output_tokens=33,
            cache_read_tokens=7,
            cache_write_tokens=5,
        )
    ]
    with FakeLLMServer(script) as server:
        client = anthropic.Anthropic(api_key="test-key", base_url=server.url, max_retries=0)
        with client.messages.stream(model="claude-x", max_tokens=100, messages=HI) as s:
            events = [e.type for e in s]
            message = s.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "input_json" in events  # the tool's arguments arrived as partial JSON
    assert message.content[0].text == "let me edit"
    assert message.content[1].name == "Edit" and message.content[1].input == EDIT[1]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (120, 33)
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (7, 5)


def test_responses_stream_is_what_the_sdk_expects():
    script = [
        Reply(tool_calls=[("exec_command", {"cmd": "ls"})], input_tokens=90, output_tokens=12, cache_read_tokens=30),
        Reply(text="done", output_tokens=4),
    ]
    with FakeLLMServer(script) as server:
        client = openai.OpenAI(api_key="test-key", base_url=server.url + "/v1", max_retries=0)
        events = list(client.responses.create(model="gpt-x", input="hi", stream=True))
        final = client.responses.create(model="gpt-x", input="hi", stream=True)
        last = [e for e in final][-1].response
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    call = events[-1].response.output[0]
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "exec_command", {"cmd": "ls"})
    usage = events[-1].response.usage
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens, usage.output_tokens) == (120, 30, 12)
    assert last.output_text == "done"


def test_non_streaming_requests_are_served_as_before():
    with FakeLLMServer([Reply(text="plain", input_tokens=11, output_tokens=3)]) as server:
        client = anthropic.Anthropic(api_key="test-key", base_url=server.url, max_retries=0)
        message = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "plain" and message.usage.output_tokens == 3


def test_step_mode_chooses_by_tool_results_so_a_retry_does_not_shift_the_script():
    script = [[Failure(429, retry_after_s=0), Reply(tool_calls=[("Bash", {"command": "ls"})])], Reply(text="end")]
    with FakeLLMServer(script, by_step=True) as server:
        client = anthropic.Anthropic(api_key="test-key", base_url=server.url, max_retries=2)
        first = client.messages.create(model="m", max_tokens=10, messages=[{"role": "user", "content": "go"}])
        tool_id = first.content[0].id
        second = client.messages.create(
            model="m",
            max_tokens=10,
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "a.py"}]},
            ],
        )
        assert server.remaining() == 0
    assert first.content[0].name == "Bash" and second.content[0].text == "end"
    assert [type(item).__name__ for _, item in server.served] == ["Failure", "Reply", "Reply"]


# --- the proxy ---


def test_proxy_relays_the_stream_unchanged_and_records_its_usage(proxy_for):
    script = [
        Reply(
            text="editing",
            tool_calls=[EDIT],
            input_tokens=200,
            output_tokens=41,
            cache_read_tokens=1000,
            cache_write_tokens=64,
        ),
        Reply(text="done", input_tokens=9, output_tokens=2),
    ]
    with FakeLLMServer(script) as server:
        proxy = proxy_for(server)
        results = [
            post(
                proxy,
                "/v1/messages?beta=true",
                {"model": "claude-x", "stream": True, "messages": []},
                {"x-api-key": PLACEHOLDER, "accept-encoding": "gzip, br"},
            )
            for _ in script
        ]
        sent = server.sent_bodies
        seen = server.requests
    for (status, headers, body, chunk_sizes), upstream in zip(results, sent):
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        assert body == upstream  # byte for byte
        assert len(chunk_sizes) > 3  # relayed as it came, not buffered into one piece
    assert [r.headers["x-api-key"] for r in seen] == [HOST_KEY, HOST_KEY]
    assert all(r.headers.get("accept-encoding") == "identity" for r in seen)
    assert PLACEHOLDER not in json.dumps([r.headers for r in seen])
    records = [json.loads(line) for line in proxy.records_path.read_text().splitlines()]
    assert [r["usage"] for r in records] == [
        {"input": 200, "output": 41, "cache_read": 1000, "cache_write": 64},
        {"input": 9, "output": 2, "cache_read": 0, "cache_write": 0},
    ]
    assert [(r["status"], r["model"], r["stream"], r["path"]) for r in records] == [
        (200, "claude-x", True, "/v1/messages?beta=true")
    ] * 2
    assert records[0]["client_credential"] == ["x-api-key"]
    assert all(r["started"] <= r["first_byte"] <= r["ended"] for r in records)


def test_proxy_normalises_openai_usage_and_injects_a_bearer_key(proxy_for):
    script = [
        Reply(tool_calls=[("exec_command", {"cmd": "ls"})], input_tokens=50, output_tokens=8, cache_read_tokens=400)
    ]
    with FakeLLMServer(script) as server:
        proxy = proxy_for(server, inject={"authorization": f"Bearer {HOST_KEY}"})
        status, _, body, _ = post(
            proxy,
            "/v1/responses",
            {"model": "gpt-x", "stream": True, "input": []},
            {"authorization": f"Bearer {PLACEHOLDER}"},
        )
        auth = server.requests[0].headers["authorization"]
        assert body == server.sent_bodies[0]
    assert status == 200 and auth == f"Bearer {HOST_KEY}"
    (record,) = proxy.records
    assert record.usage.input == 50 and record.usage.cache_read == 400 and record.usage.output == 8
    assert record.client_credential == ["authorization"]


def test_proxy_passes_errors_through_and_records_each_attempt(proxy_for):
    script = [Failure(429, "slow down", retry_after_s=2), Failure(529, "overloaded"), Reply(text="ok", output_tokens=5)]
    with FakeLLMServer(script) as server:
        proxy = proxy_for(server)
        results = [post(proxy, "/v1/messages", {"model": "m", "stream": True}) for _ in script]
    assert [r[0] for r in results] == [429, 529, 200]
    assert results[0][1]["retry-after"] == "2" and b"slow down" in results[0][2]
    assert [(r.status, r.ok, r.retry_after) for r in proxy.records] == [
        (429, False, "2"),
        (529, False, None),
        (200, True, None),
    ]
    assert "slow down" in proxy.records[0].error and proxy.records[0].usage is None
    assert proxy.records[2].usage.output == 5


def test_each_turn_carries_the_model_it_asked_for_and_limits_price_it_so(proxy_for):
    """A CLI's sub-agent on a cheaper model: its turn is metered as that model, and the cost limit adds
    each turn at its own price (Opus: $25 per million output tokens, Haiku: $5)."""
    script = [Reply(text="a", output_tokens=40_000), Reply(text="b", output_tokens=40_000)]
    with FakeLLMServer(script) as server:
        proxy = proxy_for(server)
        for model in ("claude-opus-4-5", "claude-haiku-4-5"):
            post(proxy, "/v1/messages", {"model": model, "stream": True, "messages": HI})
    turns = metered_turns(proxy.records)
    assert [t.model for t in turns] == ["claude-opus-4-5", "claude-haiku-4-5"]
    prices = load_prices()
    # $1.00 + $0.20 = $1.20 spent; priced all as Opus it would be $2.00
    assert limit_reached(Limits(cost_usd=1.25), "anthropic/claude-opus-4-5", prices, turns) is None
    reached = limit_reached(Limits(cost_usd=1.15), "anthropic/claude-opus-4-5", prices, turns)
    assert reached[0] == "limit_cost" and "$1.20" in reached[1], reached


def test_an_unreachable_upstream_is_a_502_record(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with LLMProxy(
        tmp_path / "llm.sock", f"http://127.0.0.1:{port}", {"x-api-key": HOST_KEY}, tmp_path / "calls.jsonl"
    ) as proxy:
        status, _, body, _ = post(proxy, "/v1/messages", {"model": "m"})
    assert status == 502 and b"upstream unreachable" in body
    assert proxy.records[0].status == 502 and "upstream unreachable" in proxy.records[0].error


def test_on_record_sees_every_call(proxy_for):
    seen = []
    with FakeLLMServer([Reply(output_tokens=3), Reply(output_tokens=4)]) as server:
        proxy = proxy_for(server, on_record=lambda r: seen.append(r.usage.output))
        for _ in range(2):
            post(proxy, "/v1/messages", {"model": "m", "stream": True})
    assert seen == [3, 4]


def test_the_forwarder_relays_an_sdk_stream_to_the_proxy(proxy_for, tmp_path):
    script = [Reply(text="through the relay", input_tokens=77, output_tokens=6)]
    (tmp_path / "fwd.py").write_text(FORWARDER)
    with FakeLLMServer(script) as server:
        proxy = proxy_for(server)
        relay = subprocess.Popen(
            [sys.executable, str(tmp_path / "fwd.py"), "0", str(proxy.socket_path)], stdout=subprocess.PIPE, text=True
        )
        try:
            port = int(relay.stdout.readline().split()[-1])
            client = anthropic.Anthropic(api_key=PLACEHOLDER, base_url=f"http://127.0.0.1:{port}", max_retries=0)
            with client.messages.stream(model="claude-x", max_tokens=10, messages=HI) as s:
                message = s.get_final_message()
        finally:
            relay.kill()
            relay.wait()
        assert server.requests[0].headers["x-api-key"] == HOST_KEY
    assert message.content[0].text == "through the relay"
    assert (proxy.records[0].usage.input, proxy.records[0].usage.output) == (77, 6)


# --- through the sandbox wall (bubblewrap: own user, PID, net, IPC, UTS, cgroup namespaces) ---

needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap (bwrap) is not installed")

CLIENT = """
import json, sys, urllib.request, urllib.error
def post(url):
    req = urllib.request.Request(url + "/v1/messages", data=json.dumps({"model": "m", "stream": True}).encode(),
                                 headers={"x-api-key": "atebench-placeholder", "content-type": "application/json"})
    try:
        return urllib.request.urlopen(req, timeout=5).read().decode()
    except (urllib.error.URLError, OSError) as e:
        return "unreachable: " + type(e).__name__
print("RELAY", post("http://127.0.0.1:" + sys.argv[1])[:60].replace("\\n", " "))
print("DIRECT", post(sys.argv[2]))
import socket
for host, port in ((sys.argv[3], int(sys.argv[4])), ("1.1.1.1", 443), ("8.8.8.8", 53)):
    try:
        socket.create_connection((host, port), timeout=2).close()
        print("REACHED", host, port)
    except OSError as e:
        print("BLOCKED", host, port, type(e).__name__)
"""
"""Inside the sandbox: the relay answers; the upstream's own address, a service listening on every
address of the host, and public addresses do not."""


def _host_address() -> str:
    """This host's address on its default route (not loopback), or loopback when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            return s.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def assert_only_the_relay_answered(output: str) -> None:
    assert "RELAY event: message_start" in output, output
    assert "DIRECT unreachable" in output and "REACHED" not in output, output
    assert output.count("BLOCKED") == 3, output


@needs_bwrap
def test_a_bind_mounted_proxy_socket_is_the_sandboxs_only_way_out(tmp_path, proxy_for):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "client.py").write_text(CLIENT)
    with FakeLLMServer([Reply(text="inside", output_tokens=9)]) as server:
        proxy = proxy_for(server)
        write_forwarder(proxy.socket_path.parent)
        sandbox = LocalSandbox(workdir)
        with socket.create_server(("0.0.0.0", 0)) as listener:  # a host service on every address
            try:
                result = sandbox.spawn(
                    relay_prelude(18080)
                    + f"python3 client.py 18080 {server.url} {_host_address()} {listener.getsockname()[1]}",
                    binds=[Bind(str(proxy.socket_path.parent), SANDBOX_RUN_DIR)],
                )
                assert result.wait(30) == 0, result.output_path.read_text()
                output = result.output_path.read_text()
            finally:
                sandbox.close()
        assert [r.headers["x-api-key"] for r in server.requests] == [HOST_KEY]
    assert_only_the_relay_answered(output)
    assert proxy.records[0].usage.output == 9 and proxy.records[0].client_credential == ["x-api-key"]


@needs_bwrap
def test_spawned_processes_stream_output_and_do_not_outlive_close(tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello.sh").write_text("echo hello from a read-only bind\n")
    sandbox = LocalSandbox(workdir)
    try:
        spawned = sandbox.spawn(
            "bash /opt-cli/hello.sh; touch /opt-cli/x 2>/dev/null || echo read-only; "
            "setsid sleep 300 & sleep 0.2; echo started; sleep 300",
            binds=[Bind(str(tools), "/opt-cli")],
            output_path=tmp_path / "out.log",
        )
        deadline = time.monotonic() + 10
        while b"started" not in (tmp_path / "out.log").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spawned.poll() is None  # still running, its output already readable
        pids = [spawned._proc.pid, *descendants(spawned._proc.pid)]
        assert len(pids) >= 3
    finally:
        sandbox.close()
    assert (tmp_path / "out.log").read_text().splitlines() == ["hello from a read-only bind", "read-only", "started"]
    time.sleep(0.2)
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}") and "Z" not in _state(pid)] == []


def test_a_missing_bind_source_is_one_clear_error(tmp_path):
    sandbox = LocalSandbox(tmp_path, isolate=bwrap_available())
    try:
        with pytest.raises(SandboxError, match="no such host path"):
            sandbox.spawn("true", binds=[Bind(str(tmp_path / "absent"), "/x")])
    finally:
        sandbox.close()


def _state(pid: int) -> str:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return "Z"
    return stat[stat.rfind(")") + 2]


def test_admit_refuses_a_call_without_forwarding_it(proxy_for):
    with FakeLLMServer([Reply(tool_calls=[EDIT, EDIT], output_tokens=3), Reply(output_tokens=4)]) as server:
        proxy = proxy_for(server, admit=lambda record: "limits.turns=1 reached" if proxy.records[0].ok else None)
        first = post(proxy, "/v1/messages", {"model": "m", "stream": True})
        second = post(proxy, "/v1/messages", {"model": "m", "stream": True})
        assert len(server.requests) == 1
    assert first[0] == 200 and second[0] == 400 and b"limits.turns=1 reached" in second[2]
    assert proxy.records[0].tool_calls == 2
    assert (proxy.records[1].refused, proxy.records[1].failed) == ("limits.turns=1 reached", False)


CLAUDE = ("POST /v1/messages",)
CODEX = ("POST /v1/responses",)
ASK = {"model": "m", "max_tokens": 5, "stream": True, "messages": HI}
FUNCTION = {"type": "function", "name": "exec_command", "parameters": {}}


@pytest.mark.parametrize(
    ("routes", "method", "path", "body", "refused"),
    [
        # what the CLIs send
        (CLAUDE, "POST", "/v1/messages?beta=true", {**ASK, "tools": [{"name": "Bash", "input_schema": {}}]}, None),
        (CODEX, "POST", "/v1/responses", {"model": "m", "tools": [FUNCTION, {"type": "custom", "name": "p"}]}, None),
        (CODEX, "POST", "/v1/responses", {"model": "m", "tools": [{"type": "namespace", "tools": [FUNCTION]}]}, None),
        (CODEX, "POST", "/v1/responses", {"model": "m", "background": False, "store": False}, None),
        ((), "GET", "/v1/files", b"", None),  # no routes: the builtin agent's host-side proxy forwards all
        # other endpoints and methods: the key's other powers
        (CLAUDE, "GET", "/v1/models", b"", "GET /v1/models is not a call this agent makes"),
        (CLAUDE, "POST", "/v1/files", ASK, "POST /v1/files is not a call"),
        (CLAUDE, "POST", "/v1/messages/batches", ASK, "POST /v1/messages/batches is not a call"),
        (CLAUDE, "POST", "/v1/messages/../files", ASK, "POST /v1/messages/../files is not a call"),
        (CLAUDE, "POST", "/v1/%6Dessages", ASK, "is not a call"),
        (CLAUDE, "GET", "/v1/messages", b"", "GET /v1/messages is not a call"),
        (CODEX, "POST", "/v1/messages", ASK, "the proxy forwards only POST /v1/responses"),
        # a body two parsers could read differently, or none
        (CLAUDE, "POST", "/v1/messages", b'{"model": "m", "model": "n"}', "a key appears twice: ['model']"),
        (CLAUDE, "POST", "/v1/messages", b'{"tools": [{"type": "custom", "type": "web_search_20250305"}]}', "twice"),
        (CLAUDE, "POST", "/v1/messages", b"model=m", "not JSON"),
        (CLAUDE, "POST", "/v1/messages", b"[]", "not a JSON object"),
        # the provider acting outside the sandbox
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {**ASK, "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "'web_search_20250305' tool",
        ),
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {**ASK, "tools": [{"type": "web_fetch_20250910", "name": "f"}]},
            "'web_fetch_20250910'",
        ),
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {**ASK, "tools": [{"type": "code_execution_20250825", "name": "c"}]},
            "code_execution",
        ),
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {**ASK, "mcp_servers": [{"type": "url", "url": "https://x"}]},
            "'mcp_servers'",
        ),
        (CLAUDE, "POST", "/v1/messages", {**ASK, "container": "c_1"}, "'container'"),
        (
            CODEX,
            "POST",
            "/v1/responses",
            {"model": "m", "tools": [FUNCTION, {"type": "web_search"}]},
            "'web_search' tool",
        ),
        (CODEX, "POST", "/v1/responses", {"model": "m", "tools": [{"type": "file_search"}]}, "'file_search'"),
        (
            CODEX,
            "POST",
            "/v1/responses",
            {"model": "m", "tools": [{"type": "mcp", "server_url": "https://x"}]},
            "'mcp'",
        ),
        (
            CODEX,
            "POST",
            "/v1/responses",
            {"model": "m", "tools": [{"type": "namespace", "tools": [{"type": "web_search"}]}]},
            "'web_search'",
        ),
        (CODEX, "POST", "/v1/responses", {"model": "m", "tools": ["web_search"]}, "'?' tool"),
        (CODEX, "POST", "/v1/responses", {"model": "m", "background": True}, "'background'"),
        (CODEX, "POST", "/v1/responses", {"model": "m", "previous_response_id": "resp_1"}, "'previous_response_id'"),
        (CODEX, "POST", "/v1/responses", {"model": "m", "conversation": "conv_1"}, "'conversation'"),
        (CODEX, "POST", "/v1/responses", {"model": "m", "prompt": {"id": "pmpt_1"}}, "'prompt'"),
        # the account's stored files, pulled into the model's context by id
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {
                **ASK,
                "messages": [
                    {"role": "user", "content": [{"type": "document", "source": {"type": "file", "file_id": "f"}}]}
                ],
            },
            "a file stored in the account",
        ),
        (
            CODEX,
            "POST",
            "/v1/responses",
            {"model": "m", "input": [{"content": [{"type": "input_file", "file_id": "f"}]}]},
            "file_id",
        ),
        (
            CODEX,
            "POST",
            "/v1/responses",
            {"model": "m", "input": [{"content": [{"type": "input_text", "text": "file_id"}]}]},
            None,
        ),
        (  # the model's own tool input is not read
            CLAUDE,
            "POST",
            "/v1/messages",
            {
                **ASK,
                "messages": [
                    {"role": "assistant", "content": [{"type": "tool_use", "input": {"source": {"type": "file"}}}]}
                ],
            },
            None,
        ),
        (
            CLAUDE,
            "POST",
            "/v1/messages",
            {**ASK, "messages": [{"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]}]},
            "a file stored in the account",
        ),
    ],
)
def test_a_sandboxed_agents_calls_are_only_its_clis(routes, method, path, body, refused):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    why = refusal_for(method, path, raw, routes)
    assert (why is None) if refused is None else (why is not None and refused in why), why


def test_an_off_limits_call_is_refused_unforwarded_and_the_agent_goes_on(proxy_for):
    """403 (a CLI does not retry it), recorded as refused rather than as an API error, never upstream; the
    next call the CLI makes goes through."""
    with FakeLLMServer([Reply(text="ok", output_tokens=4)]) as server:
        proxy = proxy_for(server, routes=CLAUDE)
        search = post(proxy, "/v1/messages", {**ASK, "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
        files = post(proxy, "/v1/files", {})
        ok = post(proxy, "/v1/messages?beta=true", ASK)
        paths = [r.path for r in server.requests]
    assert (search[0], files[0], ok[0]) == (403, 403, 200)
    assert json.loads(search[2])["error"]["type"] == "permission_error" and b"web_search" in search[2]
    assert paths == ["/v1/messages"], "only the allowed call reached the provider"
    assert [(r.refused is not None, r.failed, r.ok) for r in proxy.records] == [
        (True, False, False),
        (True, False, False),
        (False, False, True),
    ]
    logged = [json.loads(line) for line in proxy.records_path.read_text().splitlines()]
    assert "web_search_20250305" in logged[0]["refused"] and "POST /v1/files" in logged[1]["refused"]


def _raw(proxy: LLMProxy, head: bytes, body_chunks) -> bytes:
    """One request written by hand to the proxy's socket; what came back before it closed."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(proxy.socket_path))
    sock.sendall(head)
    try:
        for chunk in body_chunks:
            sock.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the proxy answered and closed before the whole body was sent: as it should
    sock.settimeout(10)
    reply = b""
    try:
        while data := sock.recv(65536):
            reply += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return reply


def test_a_request_body_over_the_bound_is_refused_unread(proxy_for, monkeypatch):
    """A body is held in the runner's memory before it is checked: a command inside could send gigabytes, by
    length or by chunks. Over MAX_REQUEST_BYTES it is a 413 and a refused record; the server sees nothing."""
    from bench import llm_proxy

    monkeypatch.setattr(llm_proxy, "MAX_REQUEST_BYTES", 1 << 20)
    with FakeLLMServer([Reply(text="ok", output_tokens=4)]) as server:
        proxy = proxy_for(server, routes=CLAUDE)
        by_length = _raw(
            proxy,
            b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000000\r\n\r\n",
            (b"x" * 65536 for _ in range(4)),
        )
        chunk = b"%x\r\n%s\r\n" % (65536, b"y" * 65536)
        by_chunks = _raw(
            proxy, b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", [chunk] * 40
        )
        ok = post(proxy, "/v1/messages", ASK)
        served = len(server.requests)
    assert by_length.startswith(b"HTTP/1.0 413") or by_length.startswith(b"HTTP/1.1 413"), by_length[:200]
    assert b" 413 " in by_chunks.split(b"\r\n")[0], by_chunks[:200]
    assert ok[0] == 200 and served == 1, "only the ordinary call reached the server"
    assert [r.refused is not None for r in proxy.records] == [True, True, False]


# --- the same through the docker sandbox (a real local engine; the image is built locally, never pulled) ---


def test_in_docker_the_proxy_socket_is_the_only_way_out(docker_client, tmp_path, proxy_for):
    from bench.sandbox.docker import DockerSandbox
    from bench.sandbox.images import BASE_IMAGE

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "client.py").write_text(CLIENT)
    with socket.create_server(("0.0.0.0", 0)) as listener:  # a host service on every address
        host, port = _host_address(), listener.getsockname()[1]
        with FakeLLMServer([Reply(text="inside", output_tokens=9)]) as server:
            proxy = proxy_for(server)
            write_forwarder(proxy.socket_path.parent)
            sandbox = DockerSandbox(workdir, BASE_IMAGE, cpus=1, memory_gb=0.5, pids=128, client=docker_client)
            try:
                spawned = sandbox.spawn(
                    relay_prelude(18080) + f"python3 client.py 18080 {server.url} {host} {port}",
                    binds=[Bind(str(proxy.socket_path.parent), SANDBOX_RUN_DIR)],
                    output_path=tmp_path / "out.log",
                )
                assert spawned.wait(60) == 0, (tmp_path / "out.log").read_text()
                output = (tmp_path / "out.log").read_text()
            finally:
                sandbox.close()
            assert [r.headers["x-api-key"] for r in server.requests] == [HOST_KEY]
    assert_only_the_relay_answered(output)
    assert proxy.records[0].usage.output == 9 and proxy.records[0].client_credential == ["x-api-key"]


def test_docker_spawn_streams_output_and_nothing_outlives_close(docker_client, tmp_path):
    from bench.sandbox.docker import DockerSandbox
    from bench.sandbox.images import BASE_IMAGE

    workdir, tools = tmp_path / "work", tmp_path / "tools"
    workdir.mkdir()
    tools.mkdir()
    (workdir / "mine.txt").write_text("agent's\n")
    (tools / "hello.sh").write_text("echo hello from a read-only bind\n")
    sandbox = DockerSandbox(workdir, BASE_IMAGE, cpus=1, memory_gb=0.5, pids=128, client=docker_client)
    try:
        spawned = sandbox.spawn(
            "bash /opt-cli/hello.sh; touch /opt-cli/x 2>/dev/null || echo read-only; "
            "{ echo x >> mine.txt; } 2>/dev/null || echo workspace read-only; "
            "setsid sleep 300 & sleep 0.2; echo started; sleep 300",
            binds=[Bind(str(tools), "/opt-cli")],
            output_path=tmp_path / "out.log",
            workdir_writable=False,
        )
        deadline = time.monotonic() + 30
        while b"started" not in (tmp_path / "out.log").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spawned.poll() is None  # still running, its output already readable
        shell = sandbox.execute("ps -eo args")
        assert "sleep 300" in shell.output, "the sandbox's shell sees the spawned processes (one PID namespace)"
        names = [c.name for c in docker_client.containers.list(all=True)]
        assert spawned.container.name in names
    finally:
        sandbox.close()
    assert (tmp_path / "out.log").read_text().splitlines() == [
        "hello from a read-only bind",
        "read-only",
        "workspace read-only",
        "started",
    ]
    assert (workdir / "mine.txt").read_text() == "agent's\n"
    names = [c.name for c in docker_client.containers.list(all=True)]
    assert sandbox.container.name not in names and spawned.container.name not in names
    assert spawned.poll() is not None
    assert not [line for line in _host_processes() if "sleep 300" in line]


def _host_processes() -> list[str]:
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


# --- the builtin agent is metered by the same proxy and the same code ---


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_the_builtin_agents_metrics_are_the_proxys_records(provider, tmp_path, monkeypatch):
    from bench.agents.builtin import BuiltinAgent
    from bench.llm import RetryPolicy
    from bench.llm_proxy import CLIENT_GONE
    from bench.specs import Limits
    from bench.types import AgentContext, TrajectoryWriter
    from tests.tiny_task import make_task_repo

    monkeypatch.setenv("ANTHROPIC_API_KEY", HOST_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", HOST_KEY)
    script = [
        Failure(429, "slow down", retry_after_s=0.05),
        # Answered after the agent gave up (its timeout is 0.5 s): billed, recorded, never a turn.
        Reply(tool_calls=[("bash", {"command": "echo late"})], input_tokens=999, output_tokens=99, delay_s=1.0),
        Reply(tool_calls=[("bash", {"command": "sleep 1.5; echo ok"})], input_tokens=300, cache_read_tokens=50),
        Reply(tool_calls=[("submit", {})], input_tokens=400, output_tokens=7, cache_write_tokens=20),
    ]
    repo = make_task_repo(tmp_path)
    trajectory = TrajectoryWriter(tmp_path / "trial" / "trajectory.jsonl")
    with FakeLLMServer(script) as server:
        agent = BuiltinAgent(
            f"{provider}/model-x",
            base_url=server.url if provider == "anthropic" else server.url + "/v1",
            request_timeout_s=0.5,
            retry=RetryPolicy(max_retries=3, base_s=0.01, max_s=0.1),
        )
        sandbox = LocalSandbox(repo, isolate=bwrap_available())
        try:
            outcome = agent.run(AgentContext("Fix add.", sandbox, Limits(), trajectory))
        finally:
            sandbox.close()
        seen = [r.headers.get("x-api-key") or r.headers.get("authorization") for r in server.requests]
        served = server.served_replies()
    assert outcome.exit_status == "submitted", outcome.error
    records = [json.loads(line) for line in (tmp_path / "trial" / "llm_calls.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in records) == [200, 200, 200, 429]
    (late,) = [r for r in records if r["error"] == CLIENT_GONE]
    assert late["usage"]["input"] == 999, "what the provider served after the agent gave up is still on record"
    assert [(t.input_tokens, t.output_tokens, t.cache_read_tokens, t.cache_write_tokens) for t in outcome.turns] == [
        (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens) for r in served[1:]
    ]
    assert (outcome.api_errors, outcome.api_retries) == (2, 2)  # the 429 and the timed-out call
    usage = [e["usage"] for e in trajectory.read() if e["kind"] == "assistant"]
    assert [u["input_tokens"] for u in usage] == [300, 400], "each turn's usage, as the proxy recorded it"
    assert set(seen) == {HOST_KEY if provider == "anthropic" else f"Bearer {HOST_KEY}"}
    assert PLACEHOLDER not in json.dumps([r.headers for r in server.requests])
