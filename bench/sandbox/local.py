"""The embedded sandbox: one persistent bash session in the workspace, optionally inside bubblewrap.

Why our own session rather than swe-rex's LocalDeployment: swe-rex starts bash with the host
environment (API keys included), has no bubblewrap option, and on timeout only interrupts the
foreground job, leaving grandchildren running. Here the shell gets an allowlisted environment, and a
timeout kills every process of the shell's session except the shell, so cwd and env survive.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.sandbox.env import sandbox_env
from bench.sandbox.errors import SandboxError
from bench.types import ExecResult

MAX_OUTPUT_CHARS = 50_000
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt")


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


def truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 5, limit * 3 // 5
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


def session_processes(sid: int) -> list[int]:
    """Every process whose session id is `sid` (orphaned grandchildren included)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Output:
    """What one shell process has printed so far; each shell gets its own, so a dying shell's reader
    thread can never mark its successor as finished."""

    def __init__(self):
        self.buffer = b""
        self.eof = False
        self.cond = threading.Condition()


def _read_into(proc: subprocess.Popen, out: _Output) -> None:
    fd = proc.stdout.fileno()
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            chunk = b""
        with out.cond:
            if not chunk:
                out.eof = True
                out.cond.notify_all()
                return
            out.buffer += chunk
            if len(out.buffer) > 4 * MAX_OUTPUT_CHARS + 65536:
                out.buffer = out.buffer[:MAX_OUTPUT_CHARS] + b"\n[... output cut ...]\n" + out.buffer[-2 * MAX_OUTPUT_CHARS:]
            out.cond.notify_all()


class LocalSandbox:
    """Persistent bash in `workdir`. isolate=None means: use bubblewrap when it is installed."""

    def __init__(self, workdir: Path | str, env: dict[str, str] | None = None, isolate: bool | None = None,
                 setup: list[str] | None = None):
        self.workdir = str(Path(workdir).resolve())
        self.isolated = bwrap_available() if isolate is None else isolate
        if self.isolated and not bwrap_available():
            raise SandboxError("--isolate needs bubblewrap (bwrap), which is not installed; "
                               "install it (apt-get install bubblewrap) or run without --isolate")
        self._control = Path(tempfile.mkdtemp(prefix="atebench-sbx-"))
        (self._control / "cmd").mkdir()
        (self._control / "tmp").mkdir()
        extra = {k: v.replace("{workdir}", self.workdir) for k, v in (env or {}).items()}
        if self.isolated:
            extra.setdefault("HOME", "/tmp")
            extra.setdefault("TMPDIR", "/tmp")
        self._env = sandbox_env(extra)
        self._nonce = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._cwd = self.workdir
        self._counter = 0
        self._closed = False
        self._start()
        for command in setup or []:
            result = self.execute(command, timeout=1800)
            if result.exit_code != 0:
                raise SandboxError(f"sandbox setup command {command!r} failed (exit {result.exit_code}): "
                                   f"{result.output[-2000:]}")

    def _argv(self) -> list[str]:
        shell = ["bash", "--noprofile", "--norc"]
        if not self.isolated:
            return shell
        # The private /tmp comes first: binds made after it (the Python install, the workspace) stay visible
        # even when they live under the host's /tmp.
        argv = ["bwrap", "--die-with-parent", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--bind", str(self._control / "tmp"), "/tmp"]
        for folder in SYSTEM_DIRS:
            if os.path.isdir(folder):
                argv += ["--ro-bind", folder, folder] if not os.path.islink(folder) else ["--symlink", os.readlink(folder), folder]
        for folder in {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent)}:
            if not any(folder == d or folder.startswith(d + "/") for d in SYSTEM_DIRS):
                argv += ["--ro-bind", folder, folder]
        argv += ["--proc", "/proc", "--dev", "/dev",
                 "--ro-bind", str(self._control / "cmd"), str(self._control / "cmd"),
                 "--bind", self.workdir, self.workdir, "--chdir", self._cwd]
        return argv + shell

    def _start(self) -> None:
        self._proc = subprocess.Popen(self._argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, cwd=self._cwd, env=self._env,
                                      start_new_session=True)
        self._out = _Output()
        threading.Thread(target=_read_into, args=(self._proc, self._out), daemon=True).start()
        self._send(f"printf '__ATEBENCH_READY_{self._nonce} %s\\n' $$\n")
        match = self._wait_for(re.compile(rf"__ATEBENCH_READY_{self._nonce} (\d+)\n".encode()), 30)
        if match is None:
            raise SandboxError(f"the local sandbox shell did not start: {self._out.buffer.decode(errors='replace')[-2000:]}")
        self._shell_pid = int(match.group(1))
        with self._out.cond:
            self._out.buffer = self._out.buffer[match.end():]

    def _send(self, text: str) -> None:
        try:
            self._proc.stdin.write(text.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def _wait_for(self, pattern: re.Pattern, timeout: float):
        deadline = time.monotonic() + timeout
        out = self._out
        with out.cond:
            while True:
                match = pattern.search(out.buffer)
                if match or out.eof:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                out.cond.wait(min(remaining, 0.5))

    def check_alive(self) -> None:
        """Raise SandboxError once closed; a dead shell is replaced on the next command, so it is no error."""
        if self._closed:
            raise SandboxError("the local sandbox was closed; no more commands can run in it")

    def execute(self, command: str, timeout: float = 120.0) -> ExecResult:
        self.check_alive()
        with self._lock:
            return self._execute(command, timeout)

    def _execute(self, command: str, timeout: float) -> ExecResult:
        self._counter += 1
        script = self._control / "cmd" / f"{self._counter}.sh"
        script.write_text(command + "\n")
        marker = f"__ATEBENCH_DONE_{self._nonce}_{self._counter}"
        pattern = re.compile(rf"\n?{marker} (-?\d+) ([^\n]*)\n".encode())
        started = time.monotonic()
        self._send(f". '{script}' < /dev/null; printf '\\n{marker} %s %s\\n' \"$?\" \"$PWD\"\n")
        match = self._wait_for(pattern, timeout)
        timed_out = match is None and not self._out.eof
        note = ""
        if timed_out:
            kill_pids([p for p in set(session_processes(self._proc.pid)) | set(descendants(self._shell_pid))
                       if p not in (self._proc.pid, self._shell_pid)])
            match = self._wait_for(pattern, 2)
        if match is None:
            note = "\n[the shell itself was stuck or exited; a new shell was started in the same directory, " \
                   "variables set earlier are gone]"
        with self._out.cond:
            raw = self._out.buffer[:match.start()] if match else self._out.buffer
            self._out.buffer = self._out.buffer[match.end():] if match else b""
        script.unlink(missing_ok=True)
        output = truncate(raw.decode(errors="replace"))
        duration = time.monotonic() - started
        if match:
            self._cwd = match.group(2).decode(errors="replace") or self._cwd
            exit_code = -1 if timed_out else int(match.group(1))
        else:
            exit_code = -1 if timed_out else self._exit_status()
            self._restart()
        if timed_out:
            output += f"\n[command timed out after {timeout:g}s; it and every process it started were killed]"
        return ExecResult(output=output + note, exit_code=exit_code, timed_out=timed_out, duration_s=duration)

    def _exit_status(self) -> int:
        try:
            return self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return -1

    def _restart(self) -> None:
        self._kill_session()
        if not os.path.isdir(self._cwd):
            self._cwd = self.workdir
        self._start()

    def _kill_session(self) -> None:
        kill_pids(list(set(session_processes(self._proc.pid)) | {self._proc.pid}))
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def host_path(self, path: str) -> Path:
        """Where a sandbox path lives on the host (the private /tmp differs when isolated)."""
        if not os.path.isabs(path):
            return Path(self._cwd) / path
        inside_workdir = path == self.workdir or path.startswith(self.workdir + "/")
        if self.isolated and not inside_workdir and (path == "/tmp" or path.startswith("/tmp/")):
            return self._control / "tmp" / os.path.relpath(path, "/tmp")
        return Path(path)

    def read_file(self, path: str) -> str:
        return self.host_path(path).read_text(errors="replace")

    def write_file(self, path: str, content: str) -> None:
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._kill_session()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self._control, ignore_errors=True)
