"""Hidden grader of getting-started on Megatron-LM: the task's shared checks
(tasks/operate/getting-started/checks/setup_checks.py: the agent's setup_env.sh builds .venv offline in the
graded copy, the requirements import from it, the example reaches step 5 with finite losses), with Megatron's
requirements and the prepared launcher (example_run.py). The run is pretrain_gpt.py on the trial's GPU; the
Megatron modules it imports are restored from the original checkout (grading.toml); the run folder's launcher,
config and script must be as prepared (test_the_example_run_is_unchanged).
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

# What pretrain_gpt.py needs, as imported, without Transformer Engine and Apex: torch, numpy (its datasets),
# packaging and einops (megatron.core imports both). The checkout itself is on the launcher's sys.path.
REQUIREMENTS = ("torch", "numpy", "packaging", "einops")


@pytest.fixture(scope="module", params=REQUIREMENTS)
def requirement(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def example_command() -> list[str]:
    """What run.sh execs."""
    return [".venv/bin/python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] + [
        "runs/getting-started/launch.py"
    ]


@pytest.fixture(scope="module")
def step_line() -> re.Pattern:
    """Megatron's iteration log: ` iteration        3/       5 | ... | lm loss: 1.038E+01 | ...`."""
    return re.compile(r"iteration\s+(\d+)/\s*\d+ \|.*?lm loss: ([^ |]+)")


@pytest.mark.parametrize("name", sorted(example_run.TEXT_FILES))
def test_the_example_run_is_unchanged(name):
    path = ROOT / "runs" / "getting-started" / name
    assert path.is_file() and path.read_text() == example_run.TEXT_FILES[name], f"runs/getting-started/{name} changed"
