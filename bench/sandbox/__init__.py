"""Sandboxes by name, and the one function the harness calls to open one for a trial.

`local` runs bash on this host inside bubblewrap (plain bash only when the user passes --no-isolate);
`docker` runs it in a container built from the framework's Dockerfile. Both satisfy bench.types.Sandbox.
"""

from __future__ import annotations

from pathlib import Path

from bench.sandbox.bare import bare_python
from bench.sandbox.docker import DockerSandbox, docker_client
from bench.sandbox.errors import SandboxError
from bench.sandbox.images import ensure_framework_image
from bench.sandbox.local import LocalSandbox
from bench.specs import FrameworkSpec, Resources

SANDBOXES = {"local": LocalSandbox, "docker": DockerSandbox}
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def open_sandbox(
    kind: str,
    workdir: Path,
    framework: FrameworkSpec,
    resources: Resources,
    gpus: list[int],
    isolate: bool = True,
    log=print,
):
    """A fresh sandbox of `kind` on `workdir`, with the framework's env and setup commands applied, and the
    Python that `resources.python` asks for: the harness's, or a bare one with the framework's wheels."""
    if kind not in SANDBOXES:
        raise SandboxError(f"unknown sandbox {kind!r}; choose one of: {', '.join(SANDBOXES)}")
    if resources.python == "bare" and kind != "local":
        raise SandboxError(
            f"the task's task.toml says [resources] python = 'bare' (the agent installs {framework.name}'s "
            f"packages itself from a wheel mirror), which the {kind} sandbox cannot give: its image has them "
            "installed; run this task with --sandbox local"
        )
    env = dict(framework.sandbox.env)
    # Math libraries size their thread pools by the host's cores, not the task's share: ten trials in parallel
    # on a 16-core host would each start 16 threads and all of them slow to a crawl (docker's CPU quota does not
    # change what the container's libraries see either). The framework's env may still set its own.
    threads = str(max(1, int(resources.cpus)))
    for var in THREAD_VARS:
        env.setdefault(var, threads)
    if kind == "local":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        if gpus:
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        return LocalSandbox(
            workdir,
            env=env,
            isolate=isolate,
            setup=framework.sandbox.setup,
            gpus=gpus,
            memory_gb=resources.memory_gb,
            pids=resources.pids,
            bare=bare_python(framework.name, framework.sandbox.python_packages, log)
            if resources.python == "bare"
            else None,
        )
    client = docker_client()
    image = ensure_framework_image(
        client, framework.name, framework.dir / framework.sandbox.dockerfile, framework.sandbox.python_packages, log=log
    )
    return DockerSandbox(
        workdir,
        image,
        env=env,
        cpus=resources.cpus,
        memory_gb=resources.memory_gb,
        pids=resources.pids,
        gpus=gpus,
        setup=framework.sandbox.setup,
        client=client,
    )


def docker_unavailable_reason() -> str | None:
    """Why the docker sandbox cannot run here, or None when it can."""
    try:
        docker_client()
        return None
    except SandboxError as e:
        return str(e)


__all__ = ["SANDBOXES", "SandboxError", "open_sandbox", "docker_unavailable_reason"]
