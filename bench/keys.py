"""API keys live in the host environment only; this module names them and scrubs them from text.

Why: trajectories, logs and results are shared and committed to reports; a key that reaches one of
them is leaked. Everything an agent records passes through `redact` first.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# The same rule as bench.sandbox.env.SECRET (kept here so redaction needs no sandbox import).
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
KEY_ENV_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "ATEBENCH_OPENAI_COMPATIBLE_API_KEY")

_KEY_SHAPES = re.compile(
    r"sk-ant-[A-Za-z0-9_\-]{8,}"
    r"|sk-(?:proj-|svcacct-)?[A-Za-z0-9_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{16,}"
)
REDACTED = "[REDACTED]"


def host_keys(env=None) -> list[str]:
    """Every secret value in the host environment, long enough to be worth scrubbing: the LLM keys and any
    variable the sandbox treats as secret (bench.sandbox.env.is_secret: *KEY*, *TOKEN*, *SECRET*, ...)."""
    env = os.environ if env is None else env
    names = set(KEY_ENV_VARS) | {name for name in env if SECRET_NAME.search(name)}
    return sorted({env[name] for name in names if len(env.get(name, "")) >= 8}, key=len, reverse=True)


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


def redact_files(folder: Path, keys: list[str] | None = None) -> list[str]:
    """Redact every text file below `folder` in place (the last sweep over a trial's folder, whatever wrote
    its files); returns the files that held a secret."""
    keys = host_keys() if keys is None else keys
    changed = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink()):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        cleaned = redact(text, keys)
        if cleaned != text:
            path.write_text(cleaned)
            changed.append(path.name)
    return changed
