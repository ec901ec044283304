"""A minimal real sandbox for agent tests: each command is a fresh `bash -c` in the workspace.

Why here: agent tests need a real shell with a key-free environment, and must not depend on the
harness's sandbox internals; this is the smallest thing that satisfies bench.types.Sandbox.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.types import ExecResult


class SubprocessSandbox:
    def __init__(self, workdir: Path | str):
        self.workdir = str(Path(workdir).resolve())
        self.env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
                    "HOME": self.workdir, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
        self.closed = False

    def execute(self, command: str, timeout: float = 120.0) -> ExecResult:
        if self.closed:
            raise RuntimeError("the sandbox was closed; no more commands can run in it")
        started = time.monotonic()
        try:
            done = subprocess.run(["bash", "-c", command], cwd=self.workdir, env=self.env, capture_output=True,
                                  text=True, timeout=timeout, start_new_session=True)
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return ExecResult(output + "\n[timed out]", -1, timed_out=True, duration_s=time.monotonic() - started)
        return ExecResult(done.stdout + done.stderr, done.returncode, duration_s=time.monotonic() - started)

    def _path(self, path: str) -> Path:
        return Path(path) if os.path.isabs(path) else Path(self.workdir) / path

    def read_file(self, path: str) -> str:
        return self._path(path).read_text()

    def write_file(self, path: str, content: str) -> None:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def close(self) -> None:
        self.closed = True
