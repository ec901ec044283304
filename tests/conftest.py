"""Shared fixtures: a tiny but real spec tree (framework + task) built in a temp folder, a private
cache, and a Docker daemon (when one is running, else a visible skip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OPS_ORIGINAL = """def add(a, b):
    return a + b


def mul(a, b):
    return a * b
"""

PREPARE = """import sys
from pathlib import Path

ops = Path(sys.argv[1]) / "calc" / "ops.py"
text = ops.read_text()
ops.write_text(text.replace("    return a * b", "    raise NotImplementedError"))
"""

HIDDEN_TESTS = """from calc.ops import add, mul


def test_mul():
    assert mul(3, 4) == 12


def test_add():
    assert add(2, 2) == 4
"""

WRONG_PATCH = """diff --git a/calc/ops.py b/calc/ops.py
--- a/calc/ops.py
+++ b/calc/ops.py
@@ -3,4 +3,4 @@ def add(a, b):
 
 
 def mul(a, b):
-    raise NotImplementedError
+    return a + b
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def patch_files(patch: str) -> list[str]:
    """The files a git patch writes (its `diff --git` headers' b/ paths), sorted."""
    return sorted(line.split(" b/", 1)[1] for line in patch.splitlines() if line.startswith("diff --git "))


def cuda_and_megatron_source() -> bool:
    """A CUDA GPU (nvidia-smi lists one) and ATEBENCH_SRC_MEGATRON set: what Megatron's GPU validations need."""
    has_gpu = shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    return bool(has_gpu and os.environ.get("ATEBENCH_SRC_MEGATRON"))


def make_toy_root(
    root: Path,
    grading_command: str = "python -m pytest -q -p no:cacheprovider tests",
    grading_timeout_s: float = 60,
    task_id: str = "arith/mul",
) -> Path:
    """frameworks/toy (bundled from toy_src/) and tasks/<task_id> whose gold is prepared -> original."""
    write(root / "toy_src" / "calc" / "__init__.py", "")
    write(root / "toy_src" / "calc" / "ops.py", OPS_ORIGINAL)
    write(root / "toy_src" / "tests" / "test_ops.py", "# the original repo's copy of the hidden test\n")
    write(
        root / "frameworks" / "toy" / "framework.toml",
        textwrap.dedent("""
        name = "toy"
        [source]
        kind = "bundled"
        path = "toy_src"
        [sandbox]
        env = { PYTHONPATH = "{workdir}" }
    """),
    )
    write(
        root / "frameworks" / "toy" / "Dockerfile",
        "FROM atebench/base:bookworm\nRUN ln -sf /usr/bin/python3 /usr/local/bin/python\n",
    )
    task = root / "tasks" / task_id
    write(
        task / "task.toml",
        textwrap.dedent(f"""
        description = "implement mul"
        measure_throughput = false
        [limits]
        turns = 5
        [grading]
        timeout_s = {grading_timeout_s}
    """),
    )
    write(task / "instruction.md", "Implement mul in {framework}'s calc/ops.py.\n")
    variant = task / "frameworks" / "toy"
    write(variant / "prepare.py", PREPARE)
    write(variant / "tests" / "test_ops.py", HIDDEN_TESTS)
    write(
        variant / "grading.toml",
        textwrap.dedent(f'''
        command = "{grading_command}"
        fail_to_pass = ["tests/test_ops.py::test_mul"]
        pass_to_pass = ["tests/test_ops.py::test_add"]
    '''),
    )
    write(variant / "wrong" / "solution.patch", WRONG_PATCH)
    return root


def pytest_sessionstart(session):
    """Bubblewrap is a requirement like torch, not an optional service: the local sandbox never runs an
    agent without it (docs/harness.md), so the suite stops at once with the fix instead of failing widely."""
    import shutil

    if shutil.which("bwrap") is None:
        pytest.exit(
            "bubblewrap (bwrap) is not installed; the local sandbox needs it. Install it with "
            "`bash scripts/install-bubblewrap.sh` (the README's commands do) and run the tests again.",
            returncode=4,
        )


@pytest.fixture(scope="session", autouse=True)
def private_tmp(tmp_path_factory):
    """The suite's temporary files, and those of the runner processes it starts, go to one folder
    that must be empty at the end: a test that leaves a workspace, a sandbox folder or a mount behind
    fails the run instead of filling the host's /tmp."""
    from bench.sandbox.images import mounts_under

    folder = tmp_path_factory.mktemp("tmp")
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    yield folder
    if previous is None:
        os.environ.pop("TMPDIR")
    else:
        os.environ["TMPDIR"] = previous
    tempfile.tempdir = None
    deadline = time.monotonic() + 5
    while (alive := processes_using(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)  # a killed sandbox may take a moment to be reaped
    mounted = mounts_under(folder)
    left = sorted(p.name for p in folder.iterdir())
    assert not alive and not mounted and not left, (
        f"tests left behind in {folder}: processes {alive}, mounts {mounted}, files {left}"
    )


def processes_using(folder: Path) -> list[str]:
    """Processes whose command line or working directory is inside `folder`: trials' and sandboxes'."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            cwd = os.readlink(proc / "cwd")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if str(folder) in command or cwd.startswith(str(folder)):
            found.append(f"{proc.name}: {command[:200]}")
    return found


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("ATEBENCH_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    """A harness cache shared by one module's tests: a framework's source and prepared checkouts are slow to make."""
    return tmp_path_factory.mktemp("atebench-cache")


def original_or_skip(framework, cache: Path, where: str) -> Path:
    """The framework's pinned source (bench.workspace.original_source), or a skip that says `where` to get it."""
    from bench import sources, workspace

    try:
        return workspace.original_source(framework, cache)
    except (sources.SourceError, workspace.WorkspaceError) as error:
        pytest.skip(f"no {framework.name} source here ({where}): {error}")


TITAN_DEPS = ("torch", "triton", "torchdata", "datasets", "tyro", "transformers", "tensorboard")
"""What importing TorchTitan's models and trainer needs (the `torchtitan` extra); .ci/run installs it before the slow
run, so the tests that import TorchTitan are slow."""


def skip_without_titan_deps() -> None:
    import importlib.util

    absent = [name for name in TITAN_DEPS if importlib.util.find_spec(name) is None]
    if absent:
        pytest.skip(
            f"TorchTitan's dependencies are not installed ({', '.join(absent)}): pip install -e '.[torchtitan]'"
        )


@pytest.fixture
def toy_root(tmp_path) -> Path:
    return make_toy_root(tmp_path / "specs")


@pytest.fixture(scope="session")
def docker_client():
    """A live daemon with the base image, or a visible skip. Tests never install or start a Docker
    engine themselves: that is a system service, started by `.ci/run` (bash .ci/setup-docker.sh)."""
    import docker

    from bench.sandbox.errors import SandboxError
    from bench.sandbox.images import ensure_base_image

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        pytest.skip(
            f"DOCKER TESTS SKIPPED: no Docker daemon reachable ({type(e).__name__}); "
            "start one with `bash .ci/setup-docker.sh` (as root) to run them"
        )
    try:
        ensure_base_image(client)
    except SandboxError as e:
        pytest.skip(f"DOCKER TESTS SKIPPED: the base image could not be built: {e}")
    return client
