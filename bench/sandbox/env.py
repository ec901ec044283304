"""The environment a sandboxed command sees: an allowlist of host variables, never a secret.

Why an allowlist: API keys and tokens live in the host environment; a denylist misses new names, and
an agent that can read a key can leak it into a result file.
"""

from __future__ import annotations

import os
import sys

from bench.keys import SECRET_NAME
from bench.sandbox.bare import harness_venv

ALLOWED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "TMPDIR",
    "LD_LIBRARY_PATH",
)
# GPU-machine settings reach the framework's processes: a host may require NCCL/NVSHMEM switches (e.g.
# NVLink multicast off) that a training run must not lose by being sandboxed.
GPU_SETTING_PREFIXES = ("NCCL_", "NVSHMEM_", "TORCH_SYMM_MEM_", "CUDA_", "NVIDIA_", "TRITON_")
SECRET = SECRET_NAME  # one rule for what the sandbox drops and what result files redact


def is_secret(name: str) -> bool:
    return bool(SECRET.search(name))


def gpu_settings(host: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in host.items() if name.startswith(GPU_SETTING_PREFIXES)}


def sandbox_env(
    extra: dict[str, str] | None = None, host: dict[str, str] | None = None, python_bin: str | None = None
) -> dict[str, str]:
    """Allowed host variables and GPU settings plus `extra`; anything that looks like a secret is dropped,
    even from extra. PATH starts with the harness interpreter's folder, or with `python_bin` (a bare
    Python, bench/sandbox/bare.py), and then the harness's venv leaves PATH altogether."""
    host = os.environ if host is None else host
    env = {name: host[name] for name in ALLOWED if name in host}
    env.update(gpu_settings(host))
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    venv = harness_venv()
    if python_bin is not None and venv is not None:
        path = [p for p in path if p != venv and not p.startswith(venv.rstrip("/") + "/")]
    env["PATH"] = os.pathsep.join([python_bin or os.path.dirname(sys.executable), *path])
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return {name: value for name, value in env.items() if not is_secret(name)}
