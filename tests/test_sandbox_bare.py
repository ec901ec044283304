"""The bare-Python sandbox (task.toml [resources] python = "bare"; bench/sandbox/bare.py): the agent's python3
has no framework package, the harness's venv and the base interpreter's site-packages are out of sight, the
wheel mirror is there read-only, and the environment gains nothing but $ATEBENCH_WHEELS."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.sandbox import SandboxError, open_sandbox
from bench.sandbox.bare import WHEELS_INSIDE, BarePython, bare_interpreter, bare_python, base_site_packages
from bench.sandbox.env import sandbox_env
from bench.sandbox.local import LocalSandbox, bwrap_available
from bench.specs import Resources, load_framework

NEEDS_BWRAP = pytest.mark.skipif(
    not bwrap_available(), reason="BUBBLEWRAP TESTS SKIPPED: bwrap is not installed (apt-get install bubblewrap)"
)
IN_A_VENV = sys.prefix != sys.base_prefix


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> BarePython:
    """A bare interpreter in a scratch cache (a few seconds) and a mirror holding one stand-in wheel."""
    cache = tmp_path_factory.mktemp("cache")
    wheels = tmp_path_factory.mktemp("wheels")
    (wheels / "torch-0.0.0-py3-none-any.whl").write_bytes(b"not a real wheel")
    old = os.environ.get("ATEBENCH_CACHE")
    os.environ["ATEBENCH_CACHE"] = str(cache)
    try:
        venv = bare_interpreter(log=lambda message: None)
    finally:
        os.environ.pop("ATEBENCH_CACHE") if old is None else os.environ.__setitem__("ATEBENCH_CACHE", old)
    assert venv.is_relative_to(cache) and (venv / ".complete").is_file()
    return BarePython(venv=venv, wheels=wheels)


def run(box: LocalSandbox, command: str) -> tuple[int, str]:
    result = box.execute(command, timeout=60)
    return result.exit_code, result.output


@NEEDS_BWRAP
def test_bare_sandbox_has_no_framework_python_and_a_read_only_mirror(bare, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-should-never-leak")
    harness = LocalSandbox(tmp_path, env={"PYTHONPATH": "{workdir}"})
    box = LocalSandbox(tmp_path, env={"PYTHONPATH": "{workdir}"}, bare=bare)
    try:
        # the contrast: the harness's sandbox imports torch, the bare one cannot
        assert run(harness, "python3 -c 'import torch'")[0] == 0
        code, out = run(box, "python3 -c 'import torch'")
        assert code != 0 and "No module named 'torch'" in out
        assert run(box, "command -v python3")[1].strip() == f"{bare.bin}/python3"
        assert run(box, "python3 -c 'import sys; print(sys.prefix)'")[1].strip() == str(bare.venv)
        assert run(box, "python3 -m pip --version")[0] == 0, "the bare Python has pip"
        assert run(box, "python3 -m venv --without-pip v && v/bin/python -c 'import json'")[0] == 0
        # the mirror: readable at the announced path, not writable
        assert run(box, 'echo "$ATEBENCH_WHEELS"')[1].strip() == WHEELS_INSIDE
        assert run(box, 'ls "$ATEBENCH_WHEELS"')[1].split() == ["torch-0.0.0-py3-none-any.whl"]
        assert run(box, 'touch "$ATEBENCH_WHEELS/x"')[0] != 0
        assert run(box, 'rm "$ATEBENCH_WHEELS/torch-0.0.0-py3-none-any.whl"')[0] != 0
        assert (bare.wheels / "torch-0.0.0-py3-none-any.whl").is_file()
        assert run(box, f"touch {bare.venv}/bin/x")[0] != 0, "the bare Python is read-only"
        # the harness's venv is gone, the base interpreter's packages are emptied
        if IN_A_VENV:
            assert run(harness, f"test -d {sys.prefix}")[0] == 0
            # absent, or an empty folder where it lies under a system folder the sandbox shows (/opt, /usr)
            assert run(box, f"ls -A {sys.prefix} 2>/dev/null")[1].strip() == "", "the harness's venv is visible"
        for folder in base_site_packages():
            assert run(box, f"ls -A {folder}")[1].strip() == "", f"{folder} is visible"
        # the environment: the harness sandbox's keys plus the mirror's variable, no secret
        keys = {line.split("=", 1)[0] for line in run(harness, "env")[1].splitlines() if "=" in line}
        bare_keys = {line.split("=", 1)[0] for line in run(box, "env")[1].splitlines() if "=" in line}
        assert bare_keys == keys | {"ATEBENCH_WHEELS"}
        assert "should-never-leak" not in run(box, "env")[1]
        assert sys.prefix not in run(box, "echo $PATH")[1] or not IN_A_VENV
    finally:
        harness.close()
        box.close()


def test_bare_path_starts_with_the_bare_python_and_drops_the_harness_venv():
    host = {"PATH": os.pathsep.join([f"{sys.prefix}/bin", "/usr/bin", "/bin"])}
    path = sandbox_env(host=host, python_bin="/cache/bare/bin")["PATH"].split(os.pathsep)
    assert path[0] == "/cache/bare/bin" and path[-2:] == ["/usr/bin", "/bin"]
    assert (f"{sys.prefix}/bin" in path) is not IN_A_VENV
    assert sandbox_env(host=host)["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_bare_needs_the_isolated_sandbox(bare, tmp_path):
    with pytest.raises(SandboxError, match="needs the isolated local sandbox.*drop --no-isolate"):
        LocalSandbox(tmp_path, isolate=False, bare=bare)


def test_docker_refuses_a_bare_task_naming_the_setting_and_the_alternative(tmp_path):
    """Refused before any engine is asked: the message is the same on a host without Docker."""
    with pytest.raises(SandboxError) as error:
        open_sandbox("docker", tmp_path, load_framework("reference"), Resources(python="bare"), [])
    message = str(error.value)
    assert "python = 'bare'" in message and "--sandbox local" in message and "docker sandbox" in message


def test_a_framework_without_requirements_has_no_mirror_for_a_bare_task():
    with pytest.raises(SandboxError, match="framework 'toy' lists no sandbox.python_packages"):
        bare_python("toy", [])


def test_the_mirror_is_per_python_version(tmp_path, monkeypatch):
    """wheels_dir's cache folder names the Python it is for (a mirror for 3.11 does not serve 3.12)."""
    from bench.sandbox import images

    monkeypatch.delenv("ATEBENCH_WHEELS", raising=False)
    monkeypatch.setenv("ATEBENCH_CACHE", str(tmp_path))
    for version in ("3.11", "3.12"):
        key = images.hashlib.sha256(b"torch").hexdigest()[:12]
        folder = tmp_path / "wheels" / f"py{version}-{images.platform.machine()}-{key}"
        folder.mkdir(parents=True)
        (folder / ".complete").write_text("torch\n")
        assert images.wheels_dir(["torch"], python=version) == folder
    assert Path(images.wheels_dir(["torch"])).name.startswith(f"py{images.BASE_PYTHON}-")


def test_an_offline_wheel_folder_must_hold_every_requirement(tmp_path, monkeypatch):
    """$ATEBENCH_WHEELS serves every framework: a folder lacking one of a framework's packages is one error naming
    them, not a mirror an agent (or an image build) finds short later."""
    from bench.sandbox import images

    for name in ("torch-2.13.0-cp311-cp311-linux_x86_64.whl", "typing_extensions-4.12-py3-none-any.whl"):
        (tmp_path / name).write_text("")
    monkeypatch.setenv("ATEBENCH_WHEELS", str(tmp_path))
    assert images.wheels_dir(["torch==2.13.0", "typing-extensions>=4"]) == tmp_path
    with pytest.raises(SandboxError, match=r"has no wheel of transformers, pytest-timeout \(needed: torch==2.13.0"):
        images.wheels_dir(["torch==2.13.0", "transformers[torch]==5.24.0", "pytest-timeout"])
