"""The docker sandbox: the workspace bind-mounted into a container with no network and cgroup limits.

Each command is one `docker exec` of bash that restores the previous command's cwd and exported
variables from a state folder inside the container, so the session persists like a shell. Why not
swe-rex's DockerDeployment: it needs `swerex-remote` inside the image and a host-network port for its
client/server link; our containers have no network at all. On timeout every process in the container
except PID 1 is killed (`kill -9 -1`), which catches grandchildren whatever they did to escape.
"""

from __future__ import annotations

import base64
import os
import posixpath
import tempfile
import threading
import time
import uuid
from pathlib import Path

import docker
from docker.types import DeviceRequest, LogConfig

from bench.sandbox import files
from bench.sandbox.env import gpu_settings, sandbox_env
from bench.sandbox.errors import SandboxError
from bench.sandbox.local import MAX_OUTPUT_CHARS, Bind
from bench.types import ExecResult, truncate

WORKDIR = "/workspace"
STATE = "/tmp/.atebench"
KEEPER = "while :; do sleep 3600 & wait; done"  # PID 1: keeps the container up and reaps orphans

WRAPPER = """
mkdir -p {state}
if [ -f {state}/cwd ]; then cd "$(cat {state}/cwd)" 2>/dev/null || cd {workdir}; else cd {workdir}; fi
if [ -f {state}/env ]; then . {state}/env; fi
eval "$(printf %s '{script}' | base64 -d)" < /dev/null
__atebench_rc=$?
pwd > {state}/cwd
export -p > {state}/env
exit $__atebench_rc
"""


def docker_client():
    """A client for the local daemon, or one clear error saying how to start one."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
        return client
    except docker.errors.DockerException as e:
        raise SandboxError(
            f"no Docker daemon reachable ({e}); start one with .ci/setup-docker.sh or use --sandbox local"
        ) from None


def nvidia_runtime_available(client) -> bool:
    return "nvidia" in (client.info().get("Runtimes") or {})


class DockerSandbox:
    """One container per sandbox; `workdir` (host) is mounted read-write at /workspace."""

    isolated = True
    """Always behind the container's wall (the local sandbox is not with --no-isolate)."""

    def __init__(
        self,
        workdir: Path | str,
        image: str,
        env: dict[str, str] | None = None,
        cpus: float = 2.0,
        memory_gb: float = 8.0,
        pids: int = 4096,
        gpus: list[int] | None = None,
        setup: list[str] | None = None,
        client=None,
    ):
        self.client = client or docker_client()
        self.host_workdir = Path(workdir).resolve()
        self.workdir = WORKDIR
        gpus = gpus or []
        if gpus and not nvidia_runtime_available(self.client):
            raise SandboxError(
                f"this trial needs {len(gpus)} GPU(s) but the Docker daemon has no NVIDIA runtime "
                f"(runtimes: {', '.join(self.client.info().get('Runtimes') or {}) or 'none'}); "
                "install nvidia-container-toolkit and restart dockerd, or use --sandbox local"
            )
        extra = {k: v.replace("{workdir}", WORKDIR) for k, v in (env or {}).items()}
        extra.update({"HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
        if gpus:
            extra.update({"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
        self._env = sandbox_env(extra, host=gpu_settings(os.environ))
        self._lock = threading.Lock()
        self._spawned: list[SpawnedContainer] = []
        self.image = image
        # What every container of this sandbox shares: limits, devices and the wall (no capabilities, no
        # privilege gain through setuid files), as the local sandbox has.
        self._wall = dict(
            working_dir=WORKDIR,
            nano_cpus=int(cpus * 1e9),
            mem_limit=f"{int(memory_gb * 1024)}m",
            pids_limit=pids,
            device_requests=[DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]
            if gpus
            else None,
            init=False,
            auto_remove=False,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # what a container prints is kept by the engine on the host's disk: bounded, as a spawned process's
            # copy is (files.copy_output), whatever a process inside writes to /proc/1/fd/1
            log_config=LogConfig(type="json-file", config={"max-size": "64m", "max-file": "2"}),
        )
        try:
            self.container = self.client.containers.run(
                image,
                command=["bash", "-c", KEEPER],
                detach=True,
                network_mode="none",
                # torchrun --standalone (and any rendezvous on the host's own name) resolves the container's
                # hostname; with no network docker writes no /etc/hosts line for it, and the lookup retries forever.
                hostname="localhost",
                name=f"atebench-{uuid.uuid4().hex[:12]}",
                environment=self._env,
                volumes={str(self.host_workdir): {"bind": WORKDIR, "mode": "rw"}},
                **self._wall,
            )
        except docker.errors.ImageNotFound:
            raise SandboxError(f"docker image {image!r} not found; build it first (bench.sandbox.images)") from None
        except docker.errors.APIError as e:
            raise SandboxError(f"could not start a container from {image!r}: {e.explanation or e}") from None
        for command in setup or []:
            result = self.execute(command, timeout=1800)
            if result.exit_code != 0:
                self.close()
                raise SandboxError(
                    f"sandbox setup command {command!r} failed (exit {result.exit_code}): {result.output[-2000:]}"
                )

    def check_alive(self) -> None:
        """Raise SandboxError when the container was removed or stopped under us."""
        try:
            self.container.reload()
        except docker.errors.NotFound:
            raise SandboxError(
                f"the sandbox container {self.container.name} is gone (removed mid-trial); the trial cannot continue"
            ) from None
        if self.container.status != "running":
            raise SandboxError(
                f"the sandbox container {self.container.name} is {self.container.status} "
                "(killed mid-trial); the trial cannot continue"
            )

    def execute(self, command: str, timeout: float = 120.0, output_limit: int = MAX_OUTPUT_CHARS) -> ExecResult:
        with self._lock:
            self.check_alive()
            script = base64.b64encode(command.encode()).decode()
            wrapped = WRAPPER.format(state=STATE, workdir=WORKDIR, script=script)
            api = self.client.api
            started = time.monotonic()
            try:
                exec_id = api.exec_create(
                    self.container.id, ["bash", "-c", wrapped], stdout=True, stderr=True, environment=self._env
                )["Id"]
            except docker.errors.APIError as e:
                self.check_alive()
                raise SandboxError(f"docker exec failed: {e.explanation or e}") from None
            box: dict = {"output": b"", "limit": output_limit}
            runner = threading.Thread(target=self._exec_start, args=(exec_id, box), daemon=True)
            runner.start()
            runner.join(timeout)
            timed_out = runner.is_alive()
            kill_problem = None
            if timed_out:
                kill_problem = self._kill_all()
                runner.join(10)
            if "error" in box:
                self.check_alive()
                raise SandboxError(f"docker exec failed: {box['error']}")
            output = truncate(box.get("output", b"").decode(errors="replace"), output_limit)
            exit_code = -1 if timed_out else self._exit_code(exec_id)
            if timed_out and kill_problem:
                output += f"\n[command timed out after {timeout:g}s; killing its processes failed: {kill_problem}]"
            elif timed_out:
                output += f"\n[command timed out after {timeout:g}s; every process it started was killed]"
            return ExecResult(
                output=output, exit_code=exit_code, timed_out=timed_out, duration_s=time.monotonic() - started
            )

    def _exec_start(self, exec_id: str, box: dict) -> None:
        """Stream the command's output, keeping its head and tail: a command printing without end (`yes`)
        cannot fill the runner's memory."""
        limit = box["limit"]
        try:
            for chunk in self.client.api.exec_start(exec_id, stream=True, demux=False):
                output = box["output"] + chunk
                if len(output) > 4 * limit + 65536:
                    output = output[:limit] + b"\n[... output cut ...]\n" + output[-2 * limit :]
                box["output"] = output
        except Exception as e:  # any failure of the stream (the container died under us): execute raises it
            box["error"] = f"{type(e).__name__}: {e}"

    def _exit_code(self, exec_id: str) -> int:
        code = self.client.api.exec_inspect(exec_id).get("ExitCode")
        if code is None:
            self.check_alive()
            return -1
        return code

    def _kill_all(self) -> str | None:
        """Kill everything but PID 1 (the keeper loop), so the session continues in a clean container;
        returns why that failed (shown with the timed-out command's output), or None."""
        try:
            self.container.exec_run(["bash", "-c", "kill -9 -1"], environment=self._env)
        except docker.errors.APIError as e:
            return str(e.explanation or e)
        return None

    def _resolve(self, path: str) -> str:
        return path if path.startswith("/") else posixpath.join(WORKDIR, path)

    def read_file(self, path: str) -> str:
        """Read inside the container, as the agent's shell would: regular files of bounded size only."""
        return files.read_file(self.execute, self._resolve(path))

    def write_file(self, path: str, content: str) -> None:
        """Write inside the container, only where the agent's shell could write."""
        files.write_file(self.execute, self._resolve(path), content)

    def spawn(
        self,
        command: str,
        binds: list[Bind] | tuple[Bind, ...] = (),
        env: dict[str, str] | None = None,
        output_path: Path | None = None,
        workdir_writable: bool = True,
    ) -> SpawnedContainer:
        """Start `command` (bash) as a long-running process behind the same wall, in the workspace, with
        `binds` added; its output goes to `output_path` on the host as it is printed.

        Why a second container: docker cannot add a mount (an installed CLI, the proxy's socket) to a
        running container. This one joins the sandbox container's network namespace (loopback only) and
        PID namespace, so it reaches what a process of the sandbox reaches and dies with it, and mounts
        the same workspace (read-only when `workdir_writable` is False); limits and wall are the same.
        `env` is added to the sandbox's environment, with secret-looking names dropped as everywhere."""
        self.check_alive()
        for bind in binds:
            if not os.path.exists(bind.host):
                raise SandboxError(f"cannot show {bind.host} in the sandbox at {bind.inside}: no such host path")
        volumes = {str(self.host_workdir): {"bind": WORKDIR, "mode": "rw" if workdir_writable else "ro"}}
        volumes.update({b.host: {"bind": b.inside, "mode": "rw" if b.writable else "ro"} for b in binds})
        if output_path is None:
            output_path = Path(tempfile.mkdtemp(prefix="atebench-spawn-")) / "output.log"
        try:
            container = self.client.containers.run(
                self.image,
                command=["bash", "--noprofile", "--norc", "-c", command],
                detach=True,
                network_mode=f"container:{self.container.id}",
                pid_mode=f"container:{self.container.id}",
                name=f"{self.container.name}-spawn-{len(self._spawned) + 1}",
                environment=sandbox_env({**self._env, **(env or {})}, host={}),
                volumes=volumes,
                **self._wall,
            )
        except docker.errors.APIError as e:
            raise SandboxError(
                f"could not start a process beside {self.container.name}: {e.explanation or e}"
            ) from None
        spawned = SpawnedContainer(container, Path(output_path))
        self._spawned.append(spawned)
        return spawned

    def close(self) -> None:
        """Remove the containers; any failure but "already gone" is raised, for the trial to log."""
        for spawned in self._spawned:
            spawned.kill()
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass  # the engine removed it already: nothing is left running


class SpawnedContainer:
    """A process started by `DockerSandbox.spawn`, in a container of its own; a thread copies its output
    to `output_path` as it comes (stdout and stderr, in order)."""

    def __init__(self, container, output_path: Path):
        self.container = container
        self.output_path = output_path
        self._code: int | None = None
        output_path.write_bytes(b"")
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        try:
            files.copy_output(self.container.logs(stream=True, follow=True, stdout=True, stderr=True), self.output_path)
        except (docker.errors.APIError, OSError) as e:  # removed under us: what came so far stays
            with open(self.output_path, "ab") as out:
                out.write(f"\n[atebench: the output stream ended: {type(e).__name__}]\n".encode())

    def poll(self) -> int | None:
        if self._code is None:
            try:
                state = self.container.client.api.inspect_container(self.container.id)["State"]
            except docker.errors.NotFound:
                self._code = -9  # removed: killed
                return self._code
            if state.get("Status") in ("exited", "dead"):
                self._copier.join(5)  # the last of its output is in the file before the code is
                self._code = int(state.get("ExitCode", -1))
        return self._code

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if it still runs after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.05)
        return code

    def kill(self) -> None:
        """The container and every process in it."""
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass  # gone already
        self._copier.join(5)
        if self._code is None:
            self._code = -9
