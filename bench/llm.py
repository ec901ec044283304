"""Thin clients over the official `anthropic` and `openai` SDKs, giving agents one reply shape.

Why our own retry loop: the SDKs retry silently, but the benchmark reports how many API errors and
retries a trial saw, so their retries are off (max_retries=0) and ours count every attempt.
Model names say the provider: "anthropic/claude-sonnet-4-5", "openai/gpt-5",
"openai-compatible/<name>@http://host:port/v1" (any local OpenAI-compatible server).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from typing import Callable, Protocol
from urllib.parse import urlsplit

import anthropic
import httpx2  # the HTTP library both SDKs are built on (their http_client)
import openai

from bench.keys import redact
from bench.llm_proxy import PLACEHOLDER_KEY


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict


@dataclass
class Usage:
    """Tokens of one reply; `input` excludes cached tokens, which are counted apart."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class LLMReply:
    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str | None = None


@dataclass
class ToolSpec:
    """A tool the model may call; `parameters` is a JSON schema object."""

    name: str
    description: str
    parameters: dict


class LLMError(RuntimeError):
    """The API failed for good (non-retryable error, or retries exhausted)."""


class DeadlineExceeded(LLMError):
    """The trial's wall-time limit arrived before the API answered; the trial ends as limit_time."""


class MissingKeyError(ValueError):
    """A model was requested whose key is not in the host environment."""


class LLMClient(Protocol):
    """Messages are provider-neutral dicts:
    {"role": "user", "content": str}
    {"role": "assistant", "content": str, "tool_calls": [ToolCall]}
    {"role": "tool", "results": [{"tool_call_id": str, "name": str, "output": str}]}
    """

    model: str
    api_errors: int
    api_retries: int

    def complete(
        self, system: str, messages: list[dict], tools: list[ToolSpec], deadline: float | None = None
    ) -> LLMReply: ...


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; a server's retry-after wins when it gives one."""

    max_retries: int = 6
    base_s: float = 1.0
    max_s: float = 60.0

    def delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.max_s)
        return min(self.base_s * 2**attempt, self.max_s) * random.uniform(0.5, 1.0)


RETRYABLE_STATUS = {408, 409, 429}


class _Retrier:
    """Runs one API call, retrying 429 / 5xx / timeouts / connection errors and counting them."""

    def __init__(self, provider: str, policy: RetryPolicy, on_api_error: Callable[[dict], None] | None):
        self.provider = provider
        self.policy = policy
        self.on_api_error = on_api_error
        self.api_errors = 0
        self.api_retries = 0

    def call(self, request: Callable[[float], object], timeout_s: float, deadline: float | None = None):
        """`request(timeout)` with each attempt's timeout cut to the time left before `deadline` (a
        time.monotonic() value), and no retry that would start after it."""
        for attempt in range(self.policy.max_retries + 1):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise DeadlineExceeded(f"{self.provider} API: the trial's wall-time limit was reached")
            try:
                return request(timeout_s if left is None else min(timeout_s, left))
            except (anthropic.APIStatusError, openai.APIStatusError) as e:
                status, retryable = e.status_code, e.status_code in RETRYABLE_STATUS or e.status_code >= 500
                retry_after, message = _retry_after_s(e.response.headers), f"HTTP {status}: {_error_message(e)}"
            except (anthropic.APITimeoutError, openai.APITimeoutError) as e:
                status, retryable, retry_after, message = None, True, None, f"timeout: {e}"
            except (anthropic.APIConnectionError, openai.APIConnectionError) as e:
                status, retryable, retry_after, message = None, True, None, f"connection error: {e}"
            self.api_errors += 1
            will_retry = retryable and attempt < self.policy.max_retries
            delay = self.policy.delay_s(attempt, retry_after) if will_retry else 0.0
            out_of_time = will_retry and deadline is not None and time.monotonic() + delay >= deadline
            if out_of_time:
                will_retry, delay = False, 0.0
            if self.on_api_error:
                self.on_api_error(
                    {
                        "provider": self.provider,
                        "status": status,
                        "message": redact(message),
                        "attempt": attempt + 1,
                        "will_retry": will_retry,
                        "retry_in_s": round(delay, 3),
                    }
                )
            if out_of_time:
                raise DeadlineExceeded(
                    redact(
                        f"{self.provider} API failed ({message}) and the trial's wall-time "
                        "limit leaves no time to retry"
                    )
                )
            if not will_retry:
                tries = f"after {attempt + 1} attempts" if retryable else "(not retryable)"
                raise LLMError(redact(f"{self.provider} API failed {tries}: {message}"))
            time.sleep(delay)
            self.api_retries += 1
        raise AssertionError("unreachable")


def _retry_after_s(headers) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
    return None


def _error_message(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(e)


class AnthropicClient:
    """Anthropic Messages API with prompt caching on the system prompt and the newest message."""

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 600.0,
        max_reply_tokens: int = 16384,
        on_api_error: Callable[[dict], None] | None = None,
        http_client: httpx2.Client | None = None,
    ):
        self.model = f"anthropic/{model}"
        self._model_id = model
        self._sdk = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, http_client=http_client
        )
        self._retrier = _Retrier("anthropic", retry or RetryPolicy(), on_api_error)
        self.timeout_s = timeout_s
        self.max_reply_tokens = max_reply_tokens

    api_errors = property(lambda self: self._retrier.api_errors)
    api_retries = property(lambda self: self._retrier.api_retries)

    def complete(
        self, system: str, messages: list[dict], tools: list[ToolSpec], deadline: float | None = None
    ) -> LLMReply:
        wire = [_anthropic_message(m) for m in messages]
        if wire and wire[-1]["content"]:
            wire[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        response = self._retrier.call(
            lambda timeout: self._sdk.messages.create(
                model=self._model_id,
                max_tokens=self.max_reply_tokens,
                messages=wire,
                system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                tools=[{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools],
                timeout=timeout,
            ),
            self.timeout_s,
            deadline,
        )
        if response.content is None or response.usage is None:
            raise LLMError(f"anthropic API returned a reply that is not a Messages API message: {_excerpt(response)}")
        text = "".join(block.text for block in response.content if block.type == "text")
        calls = [
            ToolCall(block.id, block.name, dict(block.input or {}))
            for block in response.content
            if block.type == "tool_use"
        ]
        u = response.usage
        usage = Usage(
            input=u.input_tokens or 0,
            output=u.output_tokens or 0,
            cache_read=u.cache_read_input_tokens or 0,
            cache_write=u.cache_creation_input_tokens or 0,
        )
        return LLMReply(text, calls, usage, response.stop_reason)


def _excerpt(response) -> str:
    return redact(str(response))[:500]


def _anthropic_message(message: dict) -> dict:
    if message["role"] == "user":
        return {"role": "user", "content": [{"type": "text", "text": message["content"] or "(empty)"}]}
    if message["role"] == "tool":
        return {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": r["tool_call_id"], "content": r["output"] or "(no output)"}
                for r in message["results"]
            ],
        }
    content = [{"type": "text", "text": message["content"]}] if message.get("content") else []
    content += [
        {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in message.get("tool_calls", [])
    ]
    return {"role": "assistant", "content": content or [{"type": "text", "text": "(empty)"}]}


class OpenAIClient:
    """OpenAI Chat Completions; with `base_url` it serves any OpenAI-compatible server."""

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 600.0,
        max_reply_tokens: int = 16384,
        on_api_error: Callable[[dict], None] | None = None,
        provider: str = "openai",
        http_client: httpx2.Client | None = None,
        model_url: str | None = None,
    ):
        shown_url = model_url or base_url
        self.model = f"{provider}/{model}" + (f"@{shown_url}" if provider == "openai-compatible" else "")
        self._model_id = model
        self._sdk = openai.OpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=0, http_client=http_client
        )
        self._retrier = _Retrier(provider, retry or RetryPolicy(), on_api_error)
        self.timeout_s = timeout_s
        self.max_reply_tokens = max_reply_tokens

    api_errors = property(lambda self: self._retrier.api_errors)
    api_retries = property(lambda self: self._retrier.api_retries)

    def complete(
        self, system: str, messages: list[dict], tools: list[ToolSpec], deadline: float | None = None
    ) -> LLMReply:
        wire = [{"role": "system", "content": system}]
        for m in messages:
            wire += _openai_messages(m)
        response = self._retrier.call(
            lambda timeout: self._sdk.chat.completions.create(
                model=self._model_id,
                messages=wire,
                max_completion_tokens=self.max_reply_tokens,
                tools=[
                    {
                        "type": "function",
                        "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                    }
                    for t in tools
                ],
                timeout=timeout,
            ),
            self.timeout_s,
            deadline,
        )
        if not response.choices:
            raise LLMError(f"{self._retrier.provider} API returned a reply without choices: {_excerpt(response)}")
        choice = response.choices[0]
        calls = [
            ToolCall(c.id, c.function.name, _parse_arguments(c.function.arguments))
            for c in choice.message.tool_calls or []
        ]
        return LLMReply(choice.message.content or "", calls, _openai_usage(response.usage), choice.finish_reason)


def _openai_messages(message: dict) -> list[dict]:
    if message["role"] == "tool":
        return [{"role": "tool", "tool_call_id": r["tool_call_id"], "content": r["output"]} for r in message["results"]]
    if message["role"] == "user":
        return [{"role": "user", "content": message["content"]}]
    wire: dict = {"role": "assistant", "content": message.get("content") or None}
    if message.get("tool_calls"):
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
            for c in message["tool_calls"]
        ]
    return [wire]


def _parse_arguments(raw: str | None) -> dict:
    """Models sometimes emit malformed JSON; keep it so the tool can say what was wrong."""
    try:
        parsed = json.loads(raw or "{}")
    except json.JSONDecodeError:
        return {"_unparsed_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_unparsed_arguments": raw}


def _openai_usage(u) -> Usage:
    """OpenAI's prompt_tokens include cached tokens; split them out so `input` means uncached."""
    if u is None:
        return Usage()
    details = u.prompt_tokens_details
    cache_read = (details.cached_tokens or 0) if details else 0
    cache_write = (getattr(details, "cache_write_tokens", None) or 0) if details else 0
    return Usage(
        input=max((u.prompt_tokens or 0) - cache_read - cache_write, 0),
        output=u.completion_tokens or 0,
        cache_read=cache_read,
        cache_write=cache_write,
    )


PROVIDERS = {
    "anthropic": ("ANTHROPIC_API_KEY", "ATEBENCH_ANTHROPIC_BASE_URL"),
    "openai": ("OPENAI_API_KEY", "ATEBENCH_OPENAI_BASE_URL"),
    "openai-compatible": ("ATEBENCH_OPENAI_COMPATIBLE_API_KEY", None),
}
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com", "openai": "https://api.openai.com/v1"}


def parse_model(name: str) -> tuple[str, str, str | None]:
    """'provider/model[@base_url]' -> (provider, model, base_url), with one clear error if malformed."""
    provider, _, rest = name.partition("/")
    model, _, base_url = rest.partition("@")
    if provider not in PROVIDERS or not model:
        raise ValueError(
            f"model {name!r} is not 'provider/model'; providers: {', '.join(PROVIDERS)} "
            "(e.g. anthropic/claude-sonnet-4-5, openai/gpt-5, openai-compatible/qwen3@http://127.0.0.1:8000/v1)"
        )
    if provider == "openai-compatible" and not base_url.startswith(("http://", "https://")):
        raise ValueError(
            f"model {name!r}: openai-compatible needs the server after '@', "
            "e.g. openai-compatible/qwen3@http://127.0.0.1:8000/v1"
        )
    return provider, model, base_url or None


def check_key(name: str, env=None) -> None:
    """Raise MissingKeyError before a trial starts if the model's key is not in the host environment."""
    provider, _, _ = parse_model(name)
    env = os.environ if env is None else env
    key_var = PROVIDERS[provider][0]
    if provider != "openai-compatible" and not env.get(key_var):
        raise MissingKeyError(
            f"model {name!r} needs {key_var} in the host environment; export it before the run "
            "(keys stay on the host and never enter the sandbox)"
        )


def endpoint(name: str, base_url: str | None = None, env=None) -> tuple[str, dict[str, str]]:
    """(base URL, credential headers) of `name`'s API: `base_url`, else the URL in the name, else
    ATEBENCH_<PROVIDER>_BASE_URL, else the provider's; the headers carry the host's key (none for an
    openai-compatible server without ATEBENCH_OPENAI_COMPATIBLE_API_KEY)."""
    provider, _, url_in_name = parse_model(name)
    env = os.environ if env is None else env
    check_key(name, env)
    key_var, base_url_var = PROVIDERS[provider]
    url = base_url or url_in_name or (env.get(base_url_var) if base_url_var else None) or DEFAULT_BASE_URLS[provider]
    key = env.get(key_var)
    if provider == "anthropic":
        return url, {"x-api-key": key}
    return url, {"authorization": f"Bearer {key}"} if key else {}


def make_client(name: str, base_url: str | None = None, env=None, proxy_socket: str | None = None, **options):
    """The client for `name`; `base_url` (or ATEBENCH_<PROVIDER>_BASE_URL) points it at another server.

    With `proxy_socket` (an `LLMProxy`'s unix socket, forwarding to `endpoint(name, base_url)` with the
    key) every call goes through that metering proxy and the client holds only a placeholder key."""
    provider, model, url_in_name = parse_model(name)
    env = os.environ if env is None else env
    check_key(name, env)
    key_var, base_url_var = PROVIDERS[provider]
    base_url = base_url or url_in_name or (env.get(base_url_var) if base_url_var else None) or None
    api_key = env.get(key_var) or "no-key"
    if proxy_socket is not None:
        path = urlsplit(endpoint(name, base_url, env)[0]).path.rstrip("/")
        options["http_client"] = httpx2.Client(transport=httpx2.HTTPTransport(uds=proxy_socket))
        base_url, api_key = f"http://atebench-llm-proxy{path}", PLACEHOLDER_KEY
    if provider == "anthropic":
        return AnthropicClient(model, api_key, base_url=base_url, **options)
    return OpenAIClient(model, api_key, base_url=base_url, provider=provider, model_url=url_in_name, **options)
