"""Hidden checks for fix-gradient-bug / loss-normalised-per-rank on TorchTitan: TorchTitan's own trainer
(grader_support/titan_train.py) for 3 steps from one seed checkpoint on one global batch per step whose
labels are padded unevenly (the ranks of dp=2 get 59 and 16 valid tokens): one process, dp=2 and ep=2
must log the same losses and grad norms. Shared helpers and CPU shims: frameworks/torchtitan/grader_support/.
A GPU trial adds the ladder's rungs: the same trainer runs on NCCL (grader_support/titan_gpu_checks.py).
"""

from __future__ import annotations

import pytest
import titan_case as case
from titan_gpu_checks import test_trainer_on_nccl_equals_one_gpu  # noqa: F401  the GPU rungs (gpu_fail_to_pass)

LOSS_REL = 1e-4  # the log prints 5 decimals; the bug moves the loss by about 10%
NORM_ABS = 2.5e-4  # the log prints 4 decimals


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trainer")
    assets, data = case.trainer_inputs(folder)
    args = case.trainer_args(assets, data, str(folder / "dump"))
    case.run_trainer(1, args, ["--checkpoint.create_seed_checkpoint"])
    assert (folder / "dump" / "checkpoint" / "step-0").is_dir(), "no seed checkpoint was written"
    load = ["--checkpoint.load_only"]
    return {
        "one": case.run_trainer(1, args, load, padded=True),
        "dp2": case.run_trainer(2, args, load, padded=True),
        "ep2": case.run_trainer(2, args, [*load, "--parallelism.expert_parallel_degree", "2"], padded=True),
    }


def test_every_run_logs_three_steps(runs):
    assert all([step for step, *_ in rows] == [1, 2, 3] for rows in runs.values()), runs


@pytest.mark.parametrize("layout", ["dp2", "ep2"])
def test_padded_batches_give_the_one_process_losses_and_grad_norms(layout, runs):
    for (step, loss, norm), (_, want_loss, want_norm) in zip(runs[layout], runs["one"]):
        assert abs(loss - want_loss) <= LOSS_REL * abs(want_loss), (step, loss, want_loss)
        assert abs(norm - want_norm) <= NORM_ABS, (step, norm, want_norm)
