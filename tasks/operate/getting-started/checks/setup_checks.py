"""The checks of getting-started that every framework's variant shares. Each variant's
grader_tests/test_getting_started.py imports them (grading.toml `task_support`) and defines what is its
framework's: `requirement` (a fixture parametrized over the modules the trainer needs, as imported),
`example_command` (the run, argv from the checkout's root) and `step_line` (a regex of a logged step:
group 1 the step, group 2 the loss), plus its own check that the prepared run is unchanged.

Where they run: the grading sandbox is the agent's (task.toml python = "bare"): `python3` first on PATH has
the standard library and pip only, the wheels are read-only at $ATEBENCH_WHEELS, there is no network, so
nothing can be fetched. pytest itself runs from a venv the grading command makes from the same wheels
(grading.toml); these checks import nothing but the standard library and pytest, and call setup_env.sh with
the sandbox's PATH, on which that venv is not. setup_env.sh runs once, in the graded copy without .venv
(the harness leaves an agent's .venv out of it): the script must build it.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
STEPS = 5  # the instruction's
# Gold installs (whole grading, pytest's venv included): reftrain 39-44 s, TorchTitan 46-80 s on a 2-core host;
# reftrain's install alone took 2 min 05 s once under load. task.toml grading.timeout_s is 900.
SETUP_TIMEOUT_S = 780
RUN_TIMEOUT_S = 300  # the golds' 5 steps: 2-10 s
MARK = "__getting_started_probe__"  # a probe's answer among warnings libraries print (torch without numpy)


def sandbox_env() -> dict[str, str]:
    """The sandbox's environment as the agent had it: no venv of this pytest on PATH or announced."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ROOT)  # the framework's sandbox env (framework.toml), without the grader's guard
    return env


def run(argv: list[str], timeout: float) -> tuple[int | None, str]:
    """(exit status, stdout and stderr); None when it ran past `timeout`."""
    try:
        proc = subprocess.run(
            argv, cwd=ROOT, env=sandbox_env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return None, out + f"\n[timed out after {timeout:g}s]"
    return proc.returncode, proc.stdout + proc.stderr


def printed(out: str) -> str | None:
    """What a probe printed after MARK, or None."""
    found = [line.split(MARK, 1)[1].strip() for line in out.splitlines() if MARK in line]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def setup() -> tuple[int | None, str]:
    """setup_env.sh run once, in a tree without .venv: the script must build it."""
    if VENV.is_symlink() or VENV.is_file():
        VENV.unlink()
    elif VENV.is_dir():
        shutil.rmtree(VENV)
    if not (ROOT / "setup_env.sh").is_file():
        return 127, "setup_env.sh: no such file in the checkout's root"
    started = time.monotonic()
    code, out = run(["bash", "setup_env.sh"], SETUP_TIMEOUT_S)
    print(f"$ bash setup_env.sh  [exit {code}, {time.monotonic() - started:.0f}s]\n{out[-6000:]}")
    return code, out


@pytest.fixture(scope="module")
def example(setup, example_command) -> tuple[int | None, str]:
    """The example run with the tree's .venv (after setup_env.sh, whatever it returned)."""
    if not (ROOT / example_command[0]).exists():
        return 127, f"{example_command[0]}: no such file after setup_env.sh"
    code, out = run(example_command, RUN_TIMEOUT_S)
    print(f"$ {' '.join(example_command)}  [exit {code}]\n{out[-6000:]}")
    return code, out


def test_setup_env_sh_succeeds_offline(setup):
    code, out = setup
    assert code == 0, f"bash setup_env.sh exited {code} (no network here; only $ATEBENCH_WHEELS):\n{out[-3000:]}"


def test_the_venv_is_the_checkouts_own(setup):
    assert VENV.is_dir() and not VENV.is_symlink(), ".venv must be a folder in the checkout's root, not a link"
    config = VENV / "pyvenv.cfg"
    assert config.is_file(), ".venv has no pyvenv.cfg: make it with `python3 -m venv .venv`"
    settings = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition("=") for line in config.read_text().splitlines())
        if key.strip()
    )
    assert settings.get("include-system-site-packages") == "false", (
        f"pyvenv.cfg says include-system-site-packages = {settings.get('include-system-site-packages')!r}; "
        "the environment must hold its own packages"
    )
    code, out = run([str(VENV / "bin" / "python"), "-I", "-c", f"import sys; print({MARK!r}, sys.prefix)"], 60)
    prefix = printed(out)
    assert code == 0 and prefix and os.path.realpath(prefix) == os.path.realpath(VENV), (
        f".venv/bin/python: {out[-2000:]}"
    )


def test_the_requirement_imports_from_the_venv(setup, requirement):
    probe = f"import os, {requirement}; print({MARK!r}, os.path.realpath({requirement}.__file__))"
    code, out = run([str(VENV / "bin" / "python"), "-I", "-c", probe], 120)
    assert code == 0, f".venv/bin/python cannot import {requirement}:\n{out[-2000:]}"
    where = printed(out)
    assert where and where.startswith(os.path.realpath(VENV) + os.sep), f"{requirement} is imported from {where}"


def test_the_example_run_reaches_step_5(example, step_line):
    code, out = example
    assert code == 0, f"the example run exited {code}:\n{out[-3000:]}"
    steps = [int(m.group(1)) for m in step_line.finditer(out)]
    assert steps == list(range(1, STEPS + 1)), f"logged steps {steps}, expected 1..{STEPS}:\n{out[-3000:]}"


def test_every_logged_loss_is_finite(example, step_line):
    _, out = example
    losses = [m.group(2) for m in step_line.finditer(out)]
    assert losses, f"the example run logged no loss:\n{out[-3000:]}"
    bad = [loss for loss in losses if not math.isfinite(float(loss))]
    assert not bad, f"non-finite losses {bad} among {losses}"


def test_the_sandbox_python_is_bare():
    """The grading environment itself: the python3 on PATH has no torch and the wheels are there, read-only.
    A failure here is the harness's, not the agent's."""
    python3 = shutil.which("python3", path=sandbox_env()["PATH"])
    assert python3 and not python3.startswith(str(ROOT)), f"python3 on PATH: {python3}"
    code, out = run([python3, "-c", "import torch"], 60)
    assert code != 0 and "No module named 'torch'" in out, f"{python3} imports torch: not a bare sandbox"
    wheels = os.environ.get("ATEBENCH_WHEELS", "")
    assert wheels and any(Path(wheels).glob("torch-*.whl")), f"$ATEBENCH_WHEELS={wheels!r} holds no torch wheel"
    assert not os.access(wheels, os.W_OK), f"$ATEBENCH_WHEELS={wheels} is writable"
