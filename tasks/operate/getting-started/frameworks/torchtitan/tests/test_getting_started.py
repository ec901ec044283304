"""Hidden grader of getting-started on TorchTitan: the task's shared checks
(tasks/operate/getting-started/checks/setup_checks.py: the agent's setup_env.sh builds .venv offline in the
graded copy, the requirements import from it, the example reaches step 5 with finite losses), with
TorchTitan's requirements and the prepared launcher (example_run.py). The torchtitan modules the run imports
are restored from the original checkout (grading.toml); the run folder's launcher, config and script must be
as prepared (test_the_example_run_is_unchanged).
"""

from __future__ import annotations

import re

import example_run
import pytest
from setup_checks import (  # noqa: F401  the shared checks, collected here with this module's fixtures
    ROOT,
    example,
    setup,
    test_every_logged_loss_is_finite,
    test_setup_env_sh_succeeds_offline,
    test_the_example_run_reaches_step_5,
    test_the_requirement_imports_from_the_venv,
    test_the_sandbox_python_is_bare,
    test_the_venv_is_the_checkouts_own,
)

# What the trainer needs, as imported: torch and triton (the CPU torch wheel does not pull triton, and
# torchtitan/models/moe/kernels.py imports it unconditionally), then torchtitan's pyproject.toml
# dependencies (pillow is PIL); tests/test_tasks_operate.py keeps them equal.
REQUIREMENTS = ("torch", "triton", "torchdata", "datasets", "tokenizers", "tomli", "fsspec", "tyro", "tensorboard")
REQUIREMENTS += ("einops", "PIL")


@pytest.fixture(scope="module", params=REQUIREMENTS)
def requirement(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def example_command() -> list[str]:
    """What run.sh execs."""
    return [".venv/bin/python", "runs/getting-started/launch.py"]


@pytest.fixture(scope="module")
def step_line() -> re.Pattern:
    return re.compile(r"\bstep:\s*(\d+)\s+loss:\s*(\S+)")


@pytest.mark.parametrize("name", sorted(example_run.TEXT_FILES))
def test_the_example_run_is_unchanged(name):
    path = ROOT / "runs" / "getting-started" / name
    assert path.is_file() and path.read_text() == example_run.TEXT_FILES[name], f"runs/getting-started/{name} changed"
