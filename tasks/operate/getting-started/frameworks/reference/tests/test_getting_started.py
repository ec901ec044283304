"""Hidden grader of getting-started on reftrain: the task's shared checks
(tasks/operate/getting-started/checks/setup_checks.py: the agent's setup_env.sh builds .venv offline in the
graded copy, the requirements import from it, the example reaches step 5 with finite losses), with reftrain's
requirements and example run. The framework's modules, the example config and the corpus are restored from
the original checkout (grading.toml), so the run is the framework's, as shipped.
"""

from __future__ import annotations

import re

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

# reftrain's pyproject.toml dependencies, as imported (tests/test_tasks_operate.py keeps them equal).
REQUIREMENTS = ("torch", "tokenizers", "safetensors", "numpy", "pyarrow")
EXAMPLE = "examples/tiny_qwen3_moe.toml"
RUN_SH = f"""#!/usr/bin/env bash
# The example run of getting-started: reftrain's tiny Qwen3-MoE ({EXAMPLE}) on the bundled corpus, on
# CPU, for 5 steps with the loss logged at each. From the checkout's root, after `bash setup_env.sh`:
#   bash runs/getting-started/run.sh
set -euo pipefail
exec .venv/bin/python -m reftrain.train {EXAMPLE} --training.steps=5 --training.log_interval=1 --training.device=cpu
"""


@pytest.fixture(scope="module", params=REQUIREMENTS)
def requirement(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def example_command() -> list[str]:
    """What run.sh execs (the grader runs its own copy: run.sh is checked, not trusted)."""
    return [".venv/bin/python", "-m", "reftrain.train", EXAMPLE, "--training.steps=5", "--training.log_interval=1"]


@pytest.fixture(scope="module")
def step_line() -> re.Pattern:
    return re.compile(r"^step\s+(\d+) \| loss (\S+)", re.MULTILINE)


def test_the_example_run_script_is_unchanged():
    script = ROOT / "runs" / "getting-started" / "run.sh"
    assert script.is_file() and script.read_text() == RUN_SH, f"{script.relative_to(ROOT)} was changed or removed"
