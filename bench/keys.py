"""API keys live in the host environment only; this module names them and scrubs them from text.

Why: trajectories, logs and results are shared and committed to reports; a key that reaches one of
them is leaked. Everything an agent records passes through `redact` first.
"""

from __future__ import annotations

import os
import re

KEY_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ATEBENCH_OPENAI_COMPATIBLE_API_KEY")

_KEY_SHAPES = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{16,}"
)
REDACTED = "[REDACTED]"


def host_keys(env=None) -> list[str]:
    """The key values set in the host environment (long enough to be worth scrubbing)."""
    env = os.environ if env is None else env
    return [env[name] for name in KEY_ENV_VARS if len(env.get(name, "")) >= 8]


def redact(text: str, keys: list[str] | None = None) -> str:
    """`text` with every host key value and anything shaped like a provider key replaced."""
    for key in host_keys() if keys is None else keys:
        text = text.replace(key, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, text)


def redact_value(value, keys: list[str] | None = None):
    """`redact` applied to every string inside nested dicts and lists."""
    keys = host_keys() if keys is None else keys
    if isinstance(value, str):
        return redact(value, keys)
    if isinstance(value, dict):
        return {k: redact_value(v, keys) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, keys) for v in value]
    return value
