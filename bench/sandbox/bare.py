"""A bare Python for tasks whose agent installs the framework itself (task.toml [resources] python = "bare").

The threat: the local sandbox normally shows the harness's own interpreter, first on PATH, with torch and
every framework dependency installed; an agent asked to build the framework's environment would find it
built. So a "bare" sandbox gets instead, in this order:

1. first on PATH, a venv made from the harness's base interpreter without its site-packages (the standard
   library and pip only), created once per interpreter and cached under the harness cache;
2. none of the harness's venv (not bound; covered when a system folder shows it) and none of the base
   interpreter's own site-packages (covered by an empty tmpfs);
3. the framework's wheels (framework.toml sandbox.python_packages and their requirements, for this
   interpreter's Python version, bench.sandbox.images.wheels_dir) read-only at WHEELS_INSIDE, announced
   as $ATEBENCH_WHEELS. The sandbox has no network, so they are all that can be installed.

Only the isolated local sandbox can do this (bubblewrap decides what exists inside); the docker sandbox's
images install the packages, and --no-isolate shows the whole host. Both are refused by open_sandbox.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.sandbox.errors import SandboxError
from bench.sandbox.images import wheels_dir

WHEELS_INSIDE = "/atebench-wheels"
WHEELS_VAR = "ATEBENCH_WHEELS"
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class BarePython:
    """What a bare sandbox shows: `venv` (host path = path inside, read-only) and the `wheels` folder."""

    venv: Path
    wheels: Path

    @property
    def bin(self) -> str:
        return str(self.venv / "bin")

    @property
    def base_prefix(self) -> str:
        """The base interpreter's install: the venv's python links into it, so it must be shown."""
        return sys.base_prefix


def base_site_packages() -> list[str]:
    """The base interpreter's own site-packages folders that exist (hidden in a bare sandbox)."""
    return [p for p in site.getsitepackages([sys.base_prefix]) if Path(p).is_dir()]


def harness_venv() -> str | None:
    """The harness's venv (sys.prefix) when it is one, else None: the base install is all there is."""
    return sys.prefix if sys.prefix != sys.base_prefix else None


def bare_interpreter(log=print) -> Path:
    """The cached bare venv of this base interpreter: `python -m venv` (pip from ensurepip, offline) made
    once under <cache>/python/, under a lock so parallel trials make it once."""
    from bench.workspace import cache_dir

    base = Path(getattr(sys, "_base_executable", sys.executable))
    key = hashlib.sha256(f"{base.resolve()}\n{sys.version}".encode()).hexdigest()[:12]
    folder = cache_dir() / "python" / f"bare-{PYTHON_VERSION}-{key}"
    if (folder / ".complete").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / ".complete").is_file():
            return folder
        log(f"making the bare Python of task.toml python = 'bare' ({base}, standard library and pip)")
        shutil.rmtree(folder, ignore_errors=True)  # a venv is not relocatable: made in place, marked when done
        proc = subprocess.run([str(base), "-m", "venv", str(folder)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SandboxError(
                f"could not make the bare Python ({base} -m venv {folder}, exit {proc.returncode}); that "
                f"interpreter needs its venv and ensurepip modules:\n{(proc.stdout + proc.stderr)[-2000:]}"
            )
        (folder / ".complete").write_text(f"{base}\n{sys.version}\n")
    return folder


def bare_python(framework: str, requirements: list[str], log=print) -> BarePython:
    """The bare interpreter and the framework's wheel mirror for it (both cached; the mirror is downloaded
    once, or taken from $ATEBENCH_WHEELS on an offline host)."""
    if not requirements:
        raise SandboxError(
            f"framework {framework!r} lists no sandbox.python_packages in its framework.toml, so a task with "
            "[resources] python = 'bare' has no wheels to install from; list the framework's requirements there"
        )
    wheels = wheels_dir(list(requirements), log, python=PYTHON_VERSION)
    return BarePython(venv=bare_interpreter(log), wheels=wheels)
