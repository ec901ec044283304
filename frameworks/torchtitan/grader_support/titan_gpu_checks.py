"""The GPU rungs of a TorchTitan task's ladder (grading.toml `gpu_fail_to_pass`, one id per rung the trial's GPUs
cover): the tiny Qwen3-MoE's one step (titan_layout.py) on CUDA with NCCL, through the model's own parallelize_fn
and TorchTitan's clip_grad_norm_, with nothing of the CPU shims in the way (each acts on CPU tensors or gloo groups
only) and TorchTitan's GPU kernels in the path (the EP dispatch's Triton index kernel; torch._grouped_mm experts).

- world1: one GPU against the CPU fp32 reference (titan_case.one_device): the experts' fp32 for-loop path and the
  grouped-GEMM path (bf16, as TorchTitan trains);
- world2: ep=2 and dp=2 on two GPUs against one GPU, both paths;
- world4: ep=4 and ep=2 with the experts FSDP-sharded over the other two ranks (efsdp=2), against one GPU.
Each compares the loss, every gradient before clipping, the clipped norm on every rank and the clipped gradients,
and prints what it measured (`measured: ...`). A rung whose GPUs torch does not see skips with the reason.

test_trainer_on_nccl_equals_one_gpu is the trainer's ladder (fix-gradient-bug/loss-normalised-per-rank): TorchTitan's
own trainer (titan_train.py, fp32) for 3 steps from one seed checkpoint on unevenly padded batches, on NCCL: world1
one GPU against one CPU process, world2 dp=2 and ep=2, world4 dp=4 and ep=4, against one GPU; losses and grad norms
as the log prints them.

A task's hidden test module imports them (`from titan_gpu_checks import *`); pytest collects them there. The CPU
reference and the one-GPU runs are made once per grading session (module-level cache, not a fixture: an importing
module takes the test function alone), so a 2-GPU trial's world1 and world2 rungs share them.
Tolerances, from two H200s (docs/validation/2026-12-01-torchtitan-gpu-rungs-h200x2.md; pristine v0.2.2): fp32 with
TF32 off differs by summation order only (FP32_REL; measured: gradients 8.2e-7 one GPU vs CPU, 4.9e-7 ep2 and dp2
vs one GPU, norms 8e-8). Grouped GEMM rounds its inputs and outputs to bf16, so its layouts differ by the rounding of
different token groupings (BF16_REL; measured 2.6e-5 ep2, 2.4e-3 dp2, in the experts' w3) and from the fp32 CPU
reference by bf16 arithmetic (BF16_VS_FP32_REL; measured 5.5e-3 gradients, 4e-7 loss). Each sits ~10x above what the
gold measured; a gradient scaled by an ep or dp factor moves by 0.5 or more.
"""

from __future__ import annotations

import pytest
import titan_case as case
import torch

__all__ = ["test_layouts_on_nccl_equal_one_gpu", "test_trainer_on_nccl_equals_one_gpu"]

FP32_REL = 1e-5
BF16_REL = 2e-2
BF16_VS_FP32_REL = 5e-2
RUNGS = {1: ["one"], 2: ["ep2", "dp2"], 4: ["ep4", "ep2-efsdp2"]}
EP = "--parallelism.expert_parallel_degree"
TRAINER_RUNGS = {1: {"one": []}, 2: {"dp2": [], "ep2": [EP, "2"]}, 4: {"dp4": [], "ep4": [EP, "4"]}}  # layout: flags
TRAINER_LOSS_REL = 1e-4  # the trainer's log prints 5 decimals of the loss and 4 of the grad norm
TRAINER_NORM_ABS = 2.5e-4
PATHS = {"fp32": False, "grouped-bf16": True}


def _differences(got: dict, want: dict) -> dict[str, tuple[float, str]]:
    """Relative differences of one run against another: loss, worst gradient, worst norm over the ranks, worst
    clipped gradient (value, where)."""
    norms = [abs(n - want["norms"][0]) / want["norms"][0] for n in got["norms"]]
    return {
        "loss": (abs(got["loss"] - want["loss"]) / abs(want["loss"]), "loss"),
        "gradients": case.worst(got["grads"], want["grads"]),
        "norm": (max(norms), f"rank {norms.index(max(norms))}"),
        "clipped": case.worst(got["clipped"], want["clipped"]),
    }


_CACHE: dict[str, dict] = {}


def _reference() -> dict:
    """The CPU fp32 reference step (titan_case.one_device), made once."""
    if "reference" not in _CACHE:
        _CACHE["reference"] = case.one_device()
    return _CACHE["reference"]


def _one_gpu(path: str, tmp_path_factory) -> dict:
    """The one-GPU run on `path` (PATHS), made once: every rung compares against it."""
    if path not in _CACHE:
        folder = tmp_path_factory.mktemp(f"one-{path}")
        _CACHE[path] = case.run_layout("one", _reference(), folder, device="cuda", grouped_mm=PATHS[path])
    return _CACHE[path]


def _as_run(reference: dict) -> dict:
    """The CPU reference in a layout run's shape (one rank)."""
    return {**reference, "norms": [reference["norm"]]}


@pytest.mark.parametrize("world", sorted(RUNGS), ids=[f"world{n}" for n in sorted(RUNGS)])
def test_layouts_on_nccl_equal_one_gpu(world, tmp_path_factory):
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} CUDA GPU(s), torch sees {torch.cuda.device_count()}")
    reference = _reference()
    problems = []
    for path, grouped in PATHS.items():
        one = _one_gpu(path, tmp_path_factory)
        for layout in RUNGS[world]:
            if layout == "one":
                got, want, rel = one, _as_run(reference), (BF16_VS_FP32_REL if grouped else FP32_REL)
                against = "the CPU fp32 reference"
            else:
                folder = tmp_path_factory.mktemp(f"{layout}-{path}")
                got = case.run_layout(layout, reference, folder, device="cuda", grouped_mm=grouped)
                want, rel, against = one, (BF16_REL if grouped else FP32_REL), "one GPU"
            for what, (value, where) in _differences(got, want).items():
                print(f"measured: {layout} {path} vs {against}: {what} {value:.2e} at {where} (tolerance {rel:g})")
                if not value <= rel:
                    problems.append(f"{layout} ({path}) vs {against}: {what} differs by {value:.2e} at {where}")
    assert not problems, "\n".join(problems)


def _trainer_runs(tmp_path_factory) -> dict:
    """TorchTitan's trainer (titan_train.py) on the unevenly padded batches, made once: a seed checkpoint, then
    3 steps from it in one process on CPU (gloo) and on one GPU; with the trainer's arguments for more runs."""
    if "trainer" not in _CACHE:
        folder = tmp_path_factory.mktemp("trainer-gpu")
        assets, data = case.trainer_inputs(folder)
        args = case.trainer_args(assets, data, str(folder / "dump"))
        case.run_trainer(1, args, ["--checkpoint.create_seed_checkpoint"])
        load = ["--checkpoint.load_only"]
        _CACHE["trainer"] = {
            "args": [*args, *load],
            "cpu": case.run_trainer(1, args, load, padded=True),
            "one": case.run_trainer(1, args, load, padded=True, device="cuda"),
        }
    return _CACHE["trainer"]


@pytest.mark.parametrize("world", sorted(TRAINER_RUNGS), ids=[f"world{n}" for n in sorted(TRAINER_RUNGS)])
def test_trainer_on_nccl_equals_one_gpu(world, tmp_path_factory):
    """TorchTitan's own train step on NCCL (CUDA, fp32) for 3 steps on one global batch per step whose labels are
    padded unevenly between the ranks: world1 one GPU against one CPU process; world2 dp=2 and ep=2, world4 dp=4
    and ep=4, against one GPU. Same losses and grad norms at every step."""
    if torch.cuda.device_count() < world:
        pytest.skip(f"needs {world} CUDA GPU(s), torch sees {torch.cuda.device_count()}")
    runs = _trainer_runs(tmp_path_factory)
    problems = []
    for layout, flags in TRAINER_RUNGS[world].items():
        if layout == "one":
            got, want, against = runs["one"], runs["cpu"], "one CPU process"
        else:
            got = case.run_trainer(world, [*runs["args"], *flags], padded=True, device="cuda")
            want, against = runs["one"], "one GPU"
        if [row[0] for row in got] != [1, 2, 3] or [row[0] for row in want] != [1, 2, 3]:
            problems.append(f"{layout} vs {against}: logged steps {[r[0] for r in got]} and {[r[0] for r in want]}")
            continue
        for (step, loss, norm), (_, want_loss, want_norm) in zip(got, want):
            print(
                f"measured: trainer {layout} vs {against}: step {step} loss {loss} ({want_loss}), "
                f"grad_norm {norm} ({want_norm})"
            )
            if not abs(loss - want_loss) <= TRAINER_LOSS_REL * abs(want_loss):
                problems.append(f"{layout} vs {against}: step {step} loss {loss}, want {want_loss}")
            if not abs(norm - want_norm) <= TRAINER_NORM_ABS:
                problems.append(f"{layout} vs {against}: step {step} grad_norm {norm}, want {want_norm}")
    assert not problems, "\n".join(problems)
