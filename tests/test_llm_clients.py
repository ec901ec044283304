"""LLM clients on their own: wire formats, usage normalisation, retries, model names, price table."""

from __future__ import annotations

import pytest

from bench.llm import (
    AnthropicClient,
    LLMError,
    MissingKeyError,
    OpenAIClient,
    RetryPolicy,
    ToolCall,
    ToolSpec,
    make_client,
    parse_model,
)
from bench.pricing import cost_usd, load_prices, missing_price_note
from tests.fake_llm import Failure, FakeLLMServer, Malformed, Reply

ECHO = ToolSpec("echo", "repeat the text", {"type": "object", "properties": {"text": {"type": "string"}}})
FAST = RetryPolicy(max_retries=2, base_s=0.01, max_s=0.1)
HISTORY = [
    {"role": "user", "content": "say hi"},
    {"role": "assistant", "content": "calling", "tool_calls": [ToolCall("call_1", "echo", {"text": "hi"})]},
    {"role": "tool", "results": [{"tool_call_id": "call_1", "name": "echo", "output": "hi"}]},
]


def clients(server: FakeLLMServer, **options):
    return {
        "anthropic": AnthropicClient("claude-haiku-4-5", "test-key-a", base_url=server.url, retry=FAST, **options),
        "openai": OpenAIClient("gpt-5", "test-key-o", base_url=server.url + "/v1", retry=FAST, **options),
    }


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_reply_is_normalised(provider):
    reply = Reply(
        text="done",
        tool_calls=[("echo", {"text": "x"})],
        input_tokens=7,
        output_tokens=3,
        cache_read_tokens=11,
        cache_write_tokens=13,
    )
    with FakeLLMServer([reply]) as server:
        got = clients(server)[provider].complete("be brief", HISTORY, [ECHO])
    assert got.text == "done"
    assert [(c.name, c.arguments) for c in got.tool_calls] == [("echo", {"text": "x"})]
    assert got.tool_calls[0].id
    assert (got.usage.input, got.usage.output, got.usage.cache_read, got.usage.cache_write) == (7, 3, 11, 13)
    assert got.stop_reason in ("tool_use", "tool_calls")


def test_anthropic_wire_format_carries_history_tools_and_cache_markers():
    with FakeLLMServer([Reply(text="ok")]) as server:
        clients(server)["anthropic"].complete("be brief", HISTORY, [ECHO])
    request = server.requests[0]
    assert request.path == "/v1/messages"
    body = request.body
    assert body["model"] == "claude-haiku-4-5" and body["max_tokens"] > 0
    assert body["system"][0]["text"] == "be brief" and body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"] == [{"name": "echo", "description": "repeat the text", "input_schema": ECHO.parameters}]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "echo",
        "input": {"text": "hi"},
    }
    result = body["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "call_1" and result["content"] == "hi"
    assert result["cache_control"] == {"type": "ephemeral"}


def test_openai_wire_format_carries_history_and_tools():
    with FakeLLMServer([Reply(text="ok")]) as server:
        clients(server)["openai"].complete("be brief", HISTORY, [ECHO])
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    messages = request.body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[2]["tool_calls"][0]["function"] == {"name": "echo", "arguments": '{"text": "hi"}'}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "hi"}
    assert request.body["tools"][0]["function"]["name"] == "echo"
    assert request.headers["authorization"] == "Bearer test-key-o"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_retries_honour_retry_after_and_are_counted(provider):
    seen = []
    script = [Failure(429, retry_after_s=0.08), Failure(502), Reply(text="ok")]
    with FakeLLMServer(script) as server:
        client = clients(server, on_api_error=seen.append)[provider]
        got = client.complete("s", [{"role": "user", "content": "hi"}], [])
    assert got.text == "ok"
    assert (client.api_errors, client.api_retries) == (2, 2)
    assert [e["status"] for e in seen] == [429, 502] and seen[0]["retry_in_s"] == pytest.approx(0.08)
    assert all(e["will_retry"] for e in seen)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_retries_run_out_with_one_clear_error(provider):
    with FakeLLMServer([Failure(500, "kaputt")] * 3) as server:
        client = clients(server)[provider]
        with pytest.raises(LLMError, match=rf"{provider} API failed after 3 attempts: HTTP 500: kaputt"):
            client.complete("s", [{"role": "user", "content": "hi"}], [])
    assert (client.api_errors, client.api_retries) == (3, 2)


def test_a_connection_refused_is_retried_then_reported():
    with FakeLLMServer([]) as server:
        url = server.url
    client = OpenAIClient("gpt-5", "k", base_url=url + "/v1", retry=FAST)
    with pytest.raises(LLMError, match="after 3 attempts: connection error"):
        client.complete("s", [{"role": "user", "content": "hi"}], [])
    assert client.api_errors == 3


def test_a_malformed_anthropic_reply_is_a_clear_error():
    with FakeLLMServer([Malformed({"type": "message"})]) as server:
        with pytest.raises(LLMError, match="not a Messages API message"):
            clients(server)["anthropic"].complete("s", [{"role": "user", "content": "hi"}], [])


def test_malformed_tool_arguments_are_kept_for_the_tool_to_report():
    with FakeLLMServer([Reply(tool_calls=[("echo", "{oops")])]) as server:
        got = clients(server)["openai"].complete("s", [{"role": "user", "content": "hi"}], [ECHO])
    assert got.tool_calls[0].arguments == {"_unparsed_arguments": "{oops"}


def test_model_names_pick_provider_and_server():
    assert parse_model("anthropic/claude-haiku-4-5") == ("anthropic", "claude-haiku-4-5", None)
    assert parse_model("openai-compatible/Qwen/Qwen3-8B@http://127.0.0.1:8000/v1") == (
        "openai-compatible",
        "Qwen/Qwen3-8B",
        "http://127.0.0.1:8000/v1",
    )
    with pytest.raises(ValueError, match="providers: anthropic, openai, openai-compatible"):
        parse_model("mistral/large")
    with pytest.raises(ValueError, match="needs the server after '@'"):
        parse_model("openai-compatible/qwen3")


def test_make_client_reads_keys_and_base_urls_from_the_host_environment():
    with FakeLLMServer([Reply(text="local")]) as server:
        local = make_client(f"openai-compatible/tiny@{server.url}/v1", env={})
        assert local.complete("s", [{"role": "user", "content": "hi"}], []).text == "local"
        assert local.model == f"openai-compatible/tiny@{server.url}/v1"
    with pytest.raises(MissingKeyError, match="needs ANTHROPIC_API_KEY"):
        make_client("anthropic/claude-haiku-4-5", env={})
    with FakeLLMServer([Reply(text="via env")]) as server:
        env = {"OPENAI_API_KEY": "test-key-env", "ATEBENCH_OPENAI_BASE_URL": server.url + "/v1"}
        assert (
            make_client("openai/gpt-5", env=env).complete("s", [{"role": "user", "content": "hi"}], []).text
            == "via env"
        )
        assert server.requests[0].headers["authorization"] == "Bearer test-key-env"


def test_cost_comes_from_the_price_table_and_unknown_models_cost_null(tmp_path):
    prices = load_prices()
    assert cost_usd("anthropic/claude-haiku-4-5", prices, 1_000_000, 1_000_000, 1_000_000, 1_000_000) == pytest.approx(
        7.35
    )
    assert cost_usd("openai-compatible/tiny@http://127.0.0.1:1/v1", prices, 10, 10) is None
    assert 'add [models."openai-compatible/tiny"]' in missing_price_note("openai-compatible/tiny@http://x/v1", prices)
    table = tmp_path / "prices.toml"
    table.write_text(
        '[models."openai-compatible/tiny"]\ninput = 0.0\noutput = 0.0\ncache_read = 0.0\ncache_write = 0.0\n'
    )
    assert cost_usd("openai-compatible/tiny@http://127.0.0.1:1/v1", load_prices(table), 10, 10) == 0.0
    table.write_text('[models."x/y"]\ninput = 1.0\n')
    with pytest.raises(ValueError, match=r'\[models."x/y"\] needs numeric output, cache_read, cache_write'):
        load_prices(table)
