"""The embedded sandbox: one persistent bash session in the workspace, inside bubblewrap.

Why our own session rather than swe-rex's LocalDeployment: swe-rex starts bash with the host
environment (API keys included), has no bubblewrap option, and on timeout only interrupts the
foreground job, leaving grandchildren running. Here the shell gets an allowlisted environment, and a
timeout kills every process the shell started except the shell, so cwd and env survive.

The wall (docs/harness.md, "Threat model"): new user, PID, IPC, UTS, network and cgroup namespaces,
every capability dropped, a new session, dying with its parent. Inside, the agent sees read-only system
folders (minus the files the host keeps from ordinary users), the Python install, a private /tmp and
the workspace, which is its only writable host folder. Killing bubblewrap's PID-namespace init kills
everything the agent started, setsid daemons included. `isolate=False` runs plain bash on the host: for
trusted code only, and the run says so on every start.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import signal
import stat as stat_lib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.sandbox import cgroups, files
from bench.sandbox.bare import WHEELS_INSIDE, WHEELS_VAR, BarePython, base_site_packages, harness_venv
from bench.sandbox.env import sandbox_env
from bench.sandbox.errors import SandboxError
from bench.types import ExecResult, truncate

MAX_OUTPUT_CHARS = 50_000
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt")
# Folders scanned for entries an ordinary host user may not read (shadow files, private keys); those are
# hidden inside the sandbox, whose root maps to the host's root and would otherwise read them.
MASKED_SCAN = ("/etc", "/opt")
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps/*", "/dev/dri/*")
NO_BWRAP = (
    "the local sandbox isolates agents with bubblewrap (bwrap), which is not installed here: install it "
    "(apt-get install bubblewrap), or use --sandbox docker, or pass --no-isolate to run agents as plain "
    "processes on this host, where they can read your files and keys"
)


def bwrap_available() -> bool:
    return shutil.which("bwrap") is not None


@functools.lru_cache(maxsize=4)
def _unreadable_to_others(roots=MASKED_SCAN) -> tuple[list[str], list[str]]:
    """(folders, files) under `roots` that the host keeps from ordinary users (no read bit for others).
    Walked once per process: a big /opt (a Python install) makes the walk take a second."""
    folders, files = [], []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in list(dirnames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if not stat_lib.S_ISLNK(st.st_mode) and not st.st_mode & 0o004:
                    folders.append(path)
                    dirnames.remove(name)
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat_lib.S_ISREG(st.st_mode) and not st.st_mode & 0o004:
                    files.append(path)
    return folders, files


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
        fields = stat[stat.rfind(")") + 2 :].split()
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
            children.setdefault(int(stat[stat.rfind(")") + 2 :].split()[1]), []).append(int(entry))
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
            pass  # already gone, which is what we wanted


class _Output:
    """What one shell process has printed so far; each shell gets its own, so a dying shell's reader
    thread can never mark its successor as finished."""

    def __init__(self):
        self.buffer = b""
        self.eof = False
        self.limit = MAX_OUTPUT_CHARS
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
            if len(out.buffer) > 4 * out.limit + 65536:  # a command printing without end cannot fill memory
                out.buffer = out.buffer[: out.limit] + b"\n[... output cut ...]\n" + out.buffer[-2 * out.limit :]
            out.cond.notify_all()


@dataclass(frozen=True)
class Bind:
    """A host folder shown inside a spawned process's sandbox at `inside` (read-only unless `writable`):
    e.g. an installed CLI, or the folder of the host proxy's socket."""

    host: str
    inside: str
    writable: bool = False


class Spawned:
    """A long-running process started by `LocalSandbox.spawn`; its stdout and stderr go to `output_path`
    on the host as they are printed, for the harness to tail."""

    def __init__(self, proc: subprocess.Popen, output_path: Path):
        self._proc = proc
        self.output_path = output_path
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        with self._proc.stdout as pipe:
            files.copy_output(iter(lambda: pipe.read1(65536), b""), self.output_path)

    def poll(self) -> int | None:
        code = self._proc.poll()
        if code is not None:
            self._copier.join(5)  # the last of its output is in the file before the code is
        return code

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        try:
            code = self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._copier.join(5)
        return code

    def kill(self) -> None:
        """The process and everything it started (its own session and PID namespace)."""
        kill_pids(list(set(session_processes(self._proc.pid)) | set(descendants(self._proc.pid)) | {self._proc.pid}))
        self.wait(5)


class LocalSandbox:
    """Persistent bash in `workdir`, inside bubblewrap unless `isolate=False` (plain host bash, trusted code only).

    `memory_gb`, `pids` and `file_size_gb` bound the agent's processes where the kernel allows: a cgroup
    (memory, process count) when this host lets us create one, and resource limits (file size, no core
    dumps) always; `limits` says which applied. `gpus` are host GPU indices whose device files the
    sandbox may open. `bare` swaps the harness's Python for a bare one and shows the framework's wheels
    (task.toml [resources] python = "bare"; bench/sandbox/bare.py); it needs the isolated sandbox."""

    def __init__(
        self,
        workdir: Path | str,
        env: dict[str, str] | None = None,
        isolate: bool = True,
        setup: list[str] | None = None,
        gpus: list[int] | None = None,
        memory_gb: float | None = None,
        pids: int | None = None,
        file_size_gb: float = 16.0,
        bare: BarePython | None = None,
    ):
        self.workdir = str(Path(workdir).resolve())
        self.isolated = bool(isolate)
        if self.isolated and not bwrap_available():
            raise SandboxError(NO_BWRAP)
        if bare is not None and not self.isolated:
            raise SandboxError(
                "a bare-Python sandbox (task.toml [resources] python = 'bare') needs the isolated local sandbox: "
                "without bubblewrap the harness's Python and its packages are in plain sight; drop --no-isolate"
            )
        self._bare = bare
        self._gpus = list(gpus or [])
        self._control = Path(tempfile.mkdtemp(prefix="atebench-sbx-"))
        (self._control / "cmd").mkdir()
        (self._control / "tmp").mkdir()
        os.chmod(self._control / "tmp", 0o1777)
        extra = {k: v.replace("{workdir}", self.workdir) for k, v in (env or {}).items()}
        if self.isolated:
            extra.setdefault("HOME", "/tmp")
            extra.setdefault("TMPDIR", "/tmp")
        if bare is not None:
            extra[WHEELS_VAR] = WHEELS_INSIDE
        self._env = sandbox_env(extra, python_bin=bare.bin if bare else None)
        self._nonce = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._cwd = self.workdir
        self._counter = 0
        self._closed = False
        self._spawned: list[Spawned] = []
        self._file_size_blocks = max(1, int(file_size_gb * 1024 * 1024))  # bash counts ulimit -f in KiB
        self._cgroup = cgroups.create(f"atebench-{self._nonce[:12]}", memory_gb, pids) if self.isolated else None
        self.limits = {
            "file_size_gb": file_size_gb,
            "core_dumps": False,
            **(self._cgroup.applied if self._cgroup else {}),
        }
        if not self._cgroup:
            self.limits["cgroup_note"] = cgroups.unavailable_note() if self.isolated else "not isolated: no limits"
        try:
            self._start()
        except BaseException:
            if hasattr(self, "_proc"):
                self._kill_session()
            self._cgroup.remove() if self._cgroup else None
            shutil.rmtree(self._control, ignore_errors=True)
            raise
        for command in setup or []:
            result = self.execute(command, timeout=1800)
            if result.exit_code != 0:
                self.close()
                raise SandboxError(
                    f"sandbox setup command {command!r} failed (exit {result.exit_code}): {result.output[-2000:]}"
                )

    def _argv(self, binds: tuple[Bind, ...] = (), command: str | None = None) -> list[str]:
        shell = ["bash", "--noprofile", "--norc"] + (["-c", command] if command is not None else [])
        if not self.isolated:
            return shell
        # The private /tmp comes first: binds made after it (the Python install, the workspace) stay visible
        # even when they live under the host's /tmp.
        argv = [
            "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--bind",
            str(self._control / "tmp"),
            "/tmp",
        ]
        for folder in SYSTEM_DIRS:
            if os.path.isdir(folder):
                argv += (
                    ["--ro-bind", folder, folder]
                    if not os.path.islink(folder)
                    else ["--symlink", os.readlink(folder), folder]
                )
        argv += self._python_binds()
        folders, secret_files = _unreadable_to_others()
        for folder in folders:
            argv += ["--tmpfs", folder]
        for path in secret_files:
            argv += ["--ro-bind", "/dev/null", path]
        # The sandbox's root is the host's root to the kernel's owner checks: bubblewrap leaves /proc/sys
        # writable then (sysctls), so it is covered read-only here.
        argv += [
            "--proc",
            "/proc",
            "--ro-bind",
            "/proc/sys",
            "/proc/sys",
            "--ro-bind-try",
            "/proc/sysrq-trigger",
            "/proc/sysrq-trigger",
            "--dev",
            "/dev",
        ]
        if self._gpus:
            for pattern in GPU_DEVICES:
                for device in sorted(glob.glob(pattern)):
                    argv += ["--dev-bind", device, device]
            if os.path.isdir("/sys"):
                argv += ["--ro-bind", "/sys", "/sys"]  # NVML and the CUDA driver read PCI topology there
        argv += [
            "--ro-bind",
            str(self._control / "cmd"),
            str(self._control / "cmd"),
            "--bind",
            self.workdir,
            self.workdir,
        ]
        for bind in binds:
            argv += ["--bind" if bind.writable else "--ro-bind", bind.host, bind.inside]
        return argv + ["--chdir", self.workdir if command is not None else self._cwd] + shell

    def _python_binds(self) -> list[str]:
        """The harness's Python install and venv, read-only; for a bare sandbox the base install only (the
        bare venv links into it) with its site-packages emptied, the bare venv and the wheel mirror."""
        bare = self._bare
        folders = (
            {sys.prefix, sys.base_prefix, str(Path(sys.executable).resolve().parent.parent)}
            if bare is None
            else {bare.base_prefix, str(bare.venv)}
        )
        argv = []
        for folder in sorted(folders):
            if not _under_system_dir(folder) and os.path.isdir(folder):
                argv += ["--ro-bind", folder, folder]
        if bare is None:
            return argv
        venv = harness_venv()
        hidden = [*base_site_packages(), *([venv] if venv and _under_system_dir(venv) else [])]
        for folder in hidden:  # shown by a bind above (a system folder, the base install): emptied
            argv += ["--tmpfs", folder]
        return argv + ["--ro-bind", str(bare.wheels), WHEELS_INSIDE]

    def _start(self) -> None:
        argv = self._argv()
        if self._cgroup:
            argv = self._cgroup.wrap(argv)
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self._cwd,
            env=self._env,
            start_new_session=True,
        )
        self._out = _Output()
        threading.Thread(target=_read_into, args=(self._proc, self._out), daemon=True).start()
        # Limits first, before the agent's first command: without capabilities they cannot be raised again.
        limits = f"ulimit -c 0; ulimit -f {self._file_size_blocks}; " if self.isolated else ""
        self._send(f"{limits}printf '__ATEBENCH_READY_{self._nonce} %s\\n' $$\n")
        match = self._wait_for(re.compile(rf"__ATEBENCH_READY_{self._nonce} (\d+)\n".encode()), 30)
        if match is None:
            raise SandboxError(
                f"the local sandbox shell did not start: {self._out.buffer.decode(errors='replace')[-2000:]}"
            )
        self._shell_pid = _host_pid(self._proc.pid, int(match.group(1)))
        with self._out.cond:
            self._out.buffer = self._out.buffer[match.end() :]

    def _send(self, text: str) -> None:
        try:
            self._proc.stdin.write(text.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the shell is dead; the wait that follows notices and restarts it

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

    def execute(self, command: str, timeout: float = 120.0, output_limit: int = MAX_OUTPUT_CHARS) -> ExecResult:
        self.check_alive()
        with self._lock:
            return self._execute(command, timeout, output_limit)

    def _execute(self, command: str, timeout: float, output_limit: int) -> ExecResult:
        self._counter += 1
        script = self._control / "cmd" / f"{self._counter}.sh"
        script.write_text(command + "\n")
        marker = f"__ATEBENCH_DONE_{self._nonce}_{self._counter}"
        pattern = re.compile(rf"\n?{marker} (-?\d+) ([^\n]*)\n".encode())
        started = time.monotonic()
        with self._out.cond:
            self._out.limit = output_limit
        self._send(f". '{script}' < /dev/null; printf '\\n{marker} %s %s\\n' \"$?\" \"$PWD\"\n")
        match = self._wait_for(pattern, timeout)
        timed_out = match is None and not self._out.eof
        note = ""
        if timed_out:
            keep = {self._proc.pid, self._shell_pid, *_ancestors(self._shell_pid, self._proc.pid)}
            kill_pids(
                [p for p in set(session_processes(self._proc.pid)) | set(descendants(self._proc.pid)) if p not in keep]
            )
            match = self._wait_for(pattern, 2)
        if match is None:
            note = (
                "\n[the shell itself was stuck or exited; a new shell was started in the same directory, "
                "variables set earlier are gone]"
            )
        with self._out.cond:
            raw = self._out.buffer[: match.start()] if match else self._out.buffer
            self._out.buffer = self._out.buffer[match.end() :] if match else b""
            self._out.limit = MAX_OUTPUT_CHARS
        script.unlink(missing_ok=True)
        output = truncate(raw.decode(errors="replace"), output_limit)
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
        """Everything the shell started, wherever it went (setsid, double fork), then bubblewrap itself."""
        kill_pids(list(set(session_processes(self._proc.pid)) | set(descendants(self._proc.pid)) | {self._proc.pid}))
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # SIGKILLed already; a zombie the kernel reaps later holds nothing

    def spawn(
        self,
        command: str,
        binds: list[Bind] | tuple[Bind, ...] = (),
        env: dict[str, str] | None = None,
        output_path: Path | None = None,
        workdir_writable: bool = True,
    ) -> Spawned:
        """Start `command` (bash) as a long-running process behind the same wall as the shell (same /tmp,
        workspace, limits), in the workspace, with `binds` added; it runs until it exits, `Spawned.kill`,
        or `close`. Output goes to a host file (`output_path`, by default one in the sandbox's control
        folder, removed at close), not through `execute`.

        `env` is added to the sandbox's environment, with secret-looking names dropped as everywhere; a
        value the command needs under such a name goes on its command line. `workdir_writable=False`
        shows it the workspace read-only (a read-only task's agent)."""
        self.check_alive()
        if not workdir_writable:
            binds = (*binds, Bind(self.workdir, self.workdir))  # after the writable one, so over it
        if binds and not self.isolated:
            raise SandboxError(
                "binds need the isolated local sandbox (bubblewrap); this one runs plain host processes (--no-isolate)"
            )
        for bind in binds:
            if not os.path.exists(bind.host):
                raise SandboxError(f"cannot show {bind.host} in the sandbox at {bind.inside}: no such host path")
        limits = f"ulimit -c 0; ulimit -f {self._file_size_blocks}; " if self.isolated else ""
        argv = self._argv(tuple(binds), limits + command)
        if self._cgroup:
            argv = self._cgroup.wrap(argv)
        if output_path is None:
            (self._control / "spawn").mkdir(exist_ok=True)
            output_path = self._control / "spawn" / f"{len(self._spawned) + 1}.log"
        output_path.write_bytes(b"")
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,  # a pipe a host thread copies (files.copy_output), never the host file itself
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=sandbox_env({**self._env, **(env or {})}, host={}),
            start_new_session=True,
        )
        spawned = Spawned(proc, output_path)
        self._spawned.append(spawned)
        return spawned

    def read_file(self, path: str) -> str:
        """Read inside the sandbox: only what the agent's shell could read, regular files of bounded size."""
        return files.read_file(self.execute, self._absolute(path))

    def write_file(self, path: str, content: str) -> None:
        """Write inside the sandbox: only where the agent's shell could write."""
        files.write_file(self.execute, self._absolute(path), content)

    def _absolute(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.join(self._cwd, path)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for spawned in self._spawned:
            spawned.kill()
        self._kill_session()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except OSError:
                pass  # the pipe of a killed process: nothing left to flush
        if self._cgroup:
            self._cgroup.remove()
        shutil.rmtree(self._control, ignore_errors=True)


def _under_system_dir(folder: str) -> bool:
    return any(folder == d or folder.startswith(d + "/") for d in SYSTEM_DIRS)


def _host_pid(root: int, inner: int) -> int:
    """The host pid of the process that is `inner` in its own PID namespace, below `root` (or root itself)."""
    for pid in [root, *descendants(root)]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == inner:
                return pid
    raise SandboxError(f"the sandbox shell (pid {inner} inside) was not found among the processes of pid {root}")


def _ancestors(pid: int, stop: int) -> list[int]:
    """The parent chain of `pid` up to `stop` (bubblewrap's own processes between the runner and the shell)."""
    chain = []
    while pid not in (stop, 0, 1):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rfind(")") + 2 :].split()[1])
        chain.append(pid)
    return chain
