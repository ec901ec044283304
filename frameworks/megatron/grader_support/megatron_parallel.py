"""What the Megatron-LM build tasks' hidden tests (enable-ep, fix-gradient-bug) share to compare parallel layouts
on GPUs: runs of Megatron's own pretrain_gpt.py under torchrun, with hooks that record what the tests compare, and
an in-process tiny MoE GPTModel at ep=1 and ep=2.

Same weights in every layout: Megatron draws each expert's initial weights on the rank that holds it, so ep=1 and
ep=2 start from different models. Every run here overwrites each parameter, after the model is built and before
the optimizer copies it, with values drawn from the parameter's global name (`global_value`): expert 5 of layer 1
gets the same weights whichever rank holds it, and a tensor-parallel rank gets its slice of the same full tensor.

Three uses, one file (placed beside the hidden tests by grading.toml `support`):
- test side: `pretrain(...)` and `layer_case(...)` launch the runs and return what they recorded; `merge`,
  `worst_relative` and `metric_mismatches` compare them;
- launcher, under torchrun, from the graded checkout's root: `megatron_parallel.py pretrain <out> [flags]`
  installs the hooks, then runs pretrain_gpt.py with the flags;
- worker, under torchrun: `megatron_parallel.py layer <out>` builds the tiny GPTModel at ep=1 (allgather
  dispatcher) and ep=2 (all-to-all dispatcher) and saves per rank its outputs and gradients.
Megatron is imported only in what runs under torchrun, so this module imports where Megatron does not.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
SEED = 20261201
"""Seeds every parameter's values (`global_value`); any fixed number does."""

RUN_ENV = {"CUDA_DEVICE_MAX_CONNECTIONS": "1", "NCCL_ALGO": "Ring", "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
"""Megatron's deterministic mode wants the last two (megatron/training/determinism.py); one stream per device."""

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # fmt: skip
"""Set when the grading pytest itself runs under torchrun; a nested torchrun must not inherit them."""

BASE_FLAGS: dict[str, object] = {
    # a small GPT whose layers 1 and 2 have 8 routed experts (top-2; layer 0 dense) on Megatron's local spec (no
    # Transformer Engine, so its fusions are off), fp32, no dropout, mock data, deterministic mode
    "transformer-impl": "local",
    "num-layers": 3,
    "moe-layer-freq": "[0,1,1]",
    "hidden-size": 64,
    "num-attention-heads": 4,
    "ffn-hidden-size": 128,
    "num-experts": 8,
    "moe-router-topk": 2,
    "moe-ffn-hidden-size": 64,
    "moe-token-dispatcher-type": "alltoall",
    "moe-router-load-balancing-type": "aux_loss",
    "moe-aux-loss-coeff": 1e-2,
    "seq-length": 64,
    "max-position-embeddings": 64,
    "position-embedding-type": "rope",
    "normalization": "RMSNorm",
    "disable-bias-linear": True,
    "untie-embeddings-and-output-weights": True,
    "attention-dropout": 0.0,
    "hidden-dropout": 0.0,
    "micro-batch-size": 2,
    "global-batch-size": 8,
    "lr": 1e-4,
    "lr-decay-style": "constant",
    "clip-grad": 1.0,
    "weight-decay": 0.1,
    "mock-data": True,
    "tokenizer-type": "NullTokenizer",
    "vocab-size": 1024,  # divisible by 128 x tp: the padded vocabulary is the same at tp = 1 and 2
    "split": "99,1,0",
    "log-interval": 1,
    "eval-iters": 0,
    "eval-interval": 1000,
    "seed": 1234,
    "deterministic-mode": True,
    "no-gradient-accumulation-fusion": True,
    "attention-backend": "unfused",
    "no-rope-fusion": True,
    "no-bias-swiglu-fusion": True,
    "no-bias-dropout-fusion": True,
    "no-masked-softmax-fusion": True,
    "no-persist-layer-norm": True,
}

GPUS = torch.cuda.device_count()
TWO_GPUS = pytest.mark.skipif(
    GPUS < 2, reason=f"needs 2 CUDA GPUs, torch sees {GPUS}: it compares layouts of two ranks over NCCL"
)
"""Marks the checks that launch runs: the trial holds 2 GPUs (task.toml framework_gpus), anything less skips them."""

EXPERT = re.compile(r"\.local_experts\.(\d+)\.")
NORM = re.compile(r"norm\.weight$")


# ---- weights by global name (pure: tested on CPU by the harness) -----------------------------------------


def global_name(local: str, ep_rank: int, local_experts: int) -> str:
    """A parameter's name as one device holds it: the local expert index becomes the global one."""
    return EXPERT.sub(lambda m: f".local_experts.{ep_rank * local_experts + int(m.group(1))}.", local)


def global_value(name: str, shape: list[int], seed: int = SEED) -> torch.Tensor:
    """The full tensor a parameter starts from: drawn from (seed, name) alone, on the CPU; norm weights near 1."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=generator, dtype=torch.float32)
    return 1.0 + 0.1 * values if NORM.search(name) else 0.02 * values


def local_slice(full: torch.Tensor, shard: tuple[int, int, int] | None) -> torch.Tensor:
    """This rank's part of `full`: shard = (dimension, shard rank, shard count), None when held whole."""
    if shard is None:
        return full
    dim, rank, count = shard
    size = full.shape[dim] // count
    return full.narrow(dim, rank * size, size)


def merge(records: list[dict]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """One gradient per global name from every rank's record ({"grads": {name: tensor}, "layout": {name: shard}}):
    tensor-parallel shards concatenated, replicas (data-parallel and tensor-parallel copies) compared. Returns the
    merged gradients and one line per replica that differs from the lowest rank's copy beyond REPLICA_REL."""
    copies: dict[tuple[str, int], list[tuple[int, torch.Tensor]]] = {}
    shards: dict[str, tuple[int, int]] = {}
    for rank, record in enumerate(records):
        for name, grad in record["grads"].items():
            shard = record["layout"][name]
            copies.setdefault((name, shard[1] if shard else 0), []).append((rank, grad))
            if shard:
                shards[name] = (shard[0], shard[2])
    mismatches = []
    for (name, part), held in sorted(copies.items()):
        first_rank, first = held[0]
        for rank, grad in held[1:]:
            difference = relative(grad, first)
            if difference > REPLICA_REL:
                where = f"{name} (shard {part})" if name in shards else name
                mismatches.append(
                    f"{where}: rank {rank} holds a gradient {difference:.2e} away from rank {first_rank}'s"
                )
    merged = {}
    for name in sorted({name for name, _ in copies}):
        if name in shards:
            dim, count = shards[name]
            parts = [copies.get((name, part)) for part in range(count)]
            if any(p is None for p in parts):
                mismatches.append(f"{name}: no rank holds some of its {count} shards")
                continue
            merged[name] = torch.cat([p[0][1] for p in parts], dim=dim)
        else:
            merged[name] = copies[(name, 0)][0][1]
    return merged, mismatches


REPLICA_REL = 1e-6
"""Copies of one gradient on different ranks come out of the same all-reduce: bitwise equal on NCCL. The bugs the
tasks inject make them differ by more than 1e-2."""


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    """|got - want| / |want| (Frobenius), 0 when both are 0."""
    got, want = got.double(), want.double()
    scale = want.norm().item()
    difference = (got - want).norm().item()
    return difference / scale if scale > 0 else (0.0 if difference == 0 else math.inf)


def worst_relative(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> tuple[float, str, list[str]]:
    """The largest per-parameter relative difference and its parameter, and the names that exist on one side
    only or differ in shape (each a difference of its own)."""
    problems = [f"{name}: only in the reference" for name in sorted(want.keys() - got.keys())]
    problems += [f"{name}: not in the reference" for name in sorted(got.keys() - want.keys())]
    worst, where = 0.0, ""
    for name in sorted(want.keys() & got.keys()):
        if got[name].shape != want[name].shape:
            problems.append(f"{name}: shape {tuple(got[name].shape)}, reference {tuple(want[name].shape)}")
            continue
        difference = relative(got[name], want[name])
        if difference > worst or not where:
            worst, where = difference, name
    return worst, where, problems


def metric_mismatches(run: dict[int, list[dict]], reference: dict[int, list[dict]], key: str, rel: float) -> list[str]:
    """Per iteration and rank, `key` ("lm loss" or "grad norm") of `run` against rank 0 of `reference`; one line
    per value off by more than `rel`, or missing."""
    want = {row["iteration"]: row[key] for row in reference.get(0, [])}
    problems = []
    for rank, rows in sorted(run.items()):
        got = {row["iteration"]: row[key] for row in rows}
        for iteration, value in sorted(want.items()):
            if got.get(iteration) is None or value is None:
                problems.append(f"rank {rank} iteration {iteration}: no {key} (reference {value})")
            elif abs(got[iteration] - value) > rel * abs(value):
                problems.append(f"rank {rank} iteration {iteration}: {key} {got[iteration]!r}, reference {value!r}")
    return problems


def pad_length(index: int, length: int) -> int:
    """How many trailing positions of sample `index` carry no loss when a run pads: 1 to length/2, uneven between
    samples (so between data-parallel ranks), the same in every layout."""
    return 1 + (index * 37) % (length // 2)


def flag_list(flags: dict[str, object]) -> list[str]:
    """pretrain_gpt.py's command line: `name: True` is the bare flag, `name: None` or False leaves it out."""
    argv = []
    for name, value in flags.items():
        if value is True:
            argv.append(f"--{name}")
        elif value is not None and value is not False:
            argv += [f"--{name}", str(value)]
    return argv


# ---- test side: launch and read back -------------------------------------------------------------------


@dataclass
class Run:
    """What one torchrun recorded: its exit status and log, per rank the metrics of every iteration, and the
    gradients of the captured iteration merged over the ranks (empty when none was captured)."""

    name: str
    returncode: int
    log: str
    metrics: dict[int, list[dict]] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    replica_mismatches: list[str] = field(default_factory=list)
    unfilled: list[int] = field(default_factory=list)

    def failure(self) -> str:
        """Why the run failed, from its first traceback on ('' when it did not). A run whose weights did not come
        from `fill` on every rank failed too: its layouts would start from different weights."""
        if self.returncode == 0 and self.unfilled:
            return (
                f"{self.name}: ranks {self.unfilled} trained without the grader's weights (the get_megatron_optimizer "
                "hook never ran): megatron/training/training.py no longer builds the optimizer through it"
            )
        if self.returncode == 0:
            return ""
        start = self.log.find("Traceback (most recent call last)")
        text = self.log[start : start + 6000] if start >= 0 else self.log[-6000:]
        return f"{self.name} exited {self.returncode}:\n{text}"


def torchrun(root: Path, world: int, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc-per-node <world> <argv>` from the checkout's root, with
    the deterministic environment and the checkout and this folder importable."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and not k.startswith("TORCHELASTIC_")}
    env.update(RUN_ENV)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), str(HERE), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}", *argv]
    try:
        return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return subprocess.CompletedProcess(command, 124, log, f"\ntimed out after {timeout:g} s")


def pretrain(
    root: Path,
    out: Path,
    flags: dict[str, object],
    world: int,
    capture: int | None = None,
    pad: bool = False,
    timeout: float = 300,
) -> Run:
    """pretrain_gpt.py of the checkout at `root` with `flags` on `world` GPUs, weights from `global_value`.
    `capture`: the iteration whose gradients (after every reduction, before the optimizer step; all-reduced even
    with the distributed optimizer) are recorded. `pad`: each sample's last `pad_length` positions carry no loss."""
    out.mkdir(parents=True, exist_ok=True)
    hooks = [f"capture={capture or 0}", f"pad={int(pad)}", f"seed={SEED}"]
    proc = torchrun(
        root, world, [str(Path(__file__).resolve()), "pretrain", str(out), *hooks, *flag_list(flags)], timeout
    )
    run = Run(out.name, proc.returncode, proc.stdout + proc.stderr, metrics=read_metrics(out))
    run.unfilled = [r for r in range(world) if not (out / f"filled_rank{r}.txt").is_file()]
    records = [torch.load(out / f"grads_rank{r}.pt") for r in range(world) if (out / f"grads_rank{r}.pt").is_file()]
    if records:
        run.grads, run.replica_mismatches = merge(records)
        if len(records) != world:
            run.replica_mismatches.append(f"only {len(records)} of {world} ranks recorded their gradients")
    return run


def read_metrics(out: Path) -> dict[int, list[dict]]:
    metrics = {}
    for path in sorted(out.glob("metrics_rank*.jsonl")):
        rank = int(path.stem.removeprefix("metrics_rank"))
        metrics[rank] = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return metrics


LAYER_LAYOUTS = (("ep1", 1, "allgather"), ("ep2", 2, "alltoall"))
"""The in-process comparison: every expert on both ranks with the allgather dispatcher, against experts split over
the two ranks with the all-to-all dispatcher."""


def layer_case(root: Path, out: Path, timeout: float = 300) -> tuple[subprocess.CompletedProcess, dict]:
    """Runs the `layer` worker on 2 GPUs; returns its process and {layout: [per-rank record]} for the layouts that
    finished (a record: {"losses", "moe_outputs": [per MoE layer], "grads": {global name: tensor}, "experts"})."""
    out.mkdir(parents=True, exist_ok=True)
    proc = torchrun(root, 2, [str(Path(__file__).resolve()), "layer", str(out)], timeout)
    found = {}
    for name, _, _ in LAYER_LAYOUTS:
        paths = [out / f"layer_{name}_rank{r}.pt" for r in range(2)]
        if all(p.is_file() for p in paths):
            found[name] = [torch.load(p) for p in paths]
    return proc, found


def validate_args(
    root: Path, world: int, flags: dict[str, object], timeout: float = 300
) -> subprocess.CompletedProcess:
    """Megatron's parse_args and validate_args of the checkout at `root` on `flags`, as rank 0 of `world` ranks, in
    a process of its own (no GPU, no process group): exit 0 when Megatron accepts the flags."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update(RUN_ENV, WORLD_SIZE=str(world), RANK="0", LOCAL_RANK="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, str(Path(__file__).resolve()), "args", *flag_list(flags)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)


# ---- under torchrun (Megatron imported) ----------------------------------------------------------------


def shard_of(name: str, param, ps) -> tuple[int, int, int] | None:
    """(dimension, rank, count) of a tensor-parallel parameter split over more than one rank, else None. Routed
    experts split over the expert-tensor-parallel group, the rest over the tensor-parallel group."""
    if not getattr(param, "tensor_model_parallel", False):
        return None
    if getattr(param, "partition_stride", 1) != 1:
        raise NotImplementedError("a strided tensor-parallel split: these runs slice contiguous blocks only")
    if EXPERT.search(name):
        rank, count = ps.get_expert_tensor_parallel_rank(), ps.get_expert_tensor_parallel_world_size()
    else:
        rank, count = ps.get_tensor_model_parallel_rank(), ps.get_tensor_model_parallel_world_size()
    return (param.partition_dim, rank, count) if count > 1 else None


def named_global_parameters(model):
    """(global name, parameter, shard) of every parameter of an unwrapped Megatron model on this rank."""
    from megatron.core import parallel_state as ps

    config = model.config
    ep_rank, ep_size = ps.get_expert_model_parallel_rank(), ps.get_expert_model_parallel_world_size()
    local_experts = (config.num_moe_experts or 0) // ep_size
    for name, param in model.named_parameters():
        shard = shard_of(name, param, ps)
        if shard and config.gated_linear_unit and "linear_fc1" in name:
            raise NotImplementedError("a gated fc1 splits per half under tensor parallelism; run these without GLU")
        yield global_name(name, ep_rank, local_experts), param, shard


@torch.no_grad()
def fill(model, seed: int) -> int:
    """Every parameter of the unwrapped `model` from `global_value`: the same model in every layout. Returns how
    many it filled."""
    count = 0
    for name, param, shard in named_global_parameters(model):
        shape = list(param.shape)
        if shard:
            shape[shard[0]] *= shard[2]
        param.copy_(local_slice(global_value(name, shape, seed), shard).to(param.device, param.dtype))
        count += 1
    return count


def _rank() -> int:
    return int(os.environ["RANK"])


def install_hooks(training, gpt_dataset, out: Path, rank: int, seed: int, capture: int, pad: bool) -> None:
    """Wraps megatron.training.training's get_megatron_optimizer and train_step (setup_model_and_optimizer and train
    look both up in the module when they call them) and, when `pad`, GPTDataset.__getitem__:
    - get_megatron_optimizer: every parameter from `fill`, after the model is built (by get_model or, as
      pretrain_gpt.py does at the pin, by its config container's builder, which bypasses get_model) and before the
      optimizer copies it; <out>/filled_rank<rank>.txt says how many parameters it filled;
    - train_step: appends {iteration, lm loss, grad norm, skipped} to <out>/metrics_rank<rank>.jsonl; in iteration
      `capture` the gradients are all-reduced even with the distributed optimizer (Megatron's own
      --save-wgrads-interval does the same) and saved to <out>/grads_rank<rank>.pt before the optimizer step;
    - __getitem__: the last `pad_length` positions of each sample carry no loss."""
    from megatron.core.utils import unwrap_model

    original_optimizer, original_train_step = training.get_megatron_optimizer, training.train_step
    iteration = [0]

    def get_megatron_optimizer(config, model_chunks, *args, **kwargs):
        filled = 0
        for chunk in unwrap_model(model_chunks):
            filled += fill(chunk, seed)
        (out / f"filled_rank{rank}.txt").write_text(f"{filled}\n")
        return original_optimizer(config, model_chunks, *args, **kwargs)

    def save_grads(model) -> None:
        grads, layout = {}, {}
        for chunk in unwrap_model(model):
            for name, param, shard in named_global_parameters(chunk):
                if getattr(param, "main_grad", None) is not None:
                    grads[name] = param.main_grad.detach().float().cpu().clone()
                    layout[name] = shard
        torch.save({"grads": grads, "layout": layout}, out / f"grads_rank{rank}.pt")

    def train_step(forward_step_func, data_iterator, model, optimizer, scheduler, config, forward_backward, *a, **kw):
        iteration[0] += 1
        if iteration[0] != capture:
            result = original_train_step(
                forward_step_func, data_iterator, model, optimizer, scheduler, config, forward_backward, *a, **kw
            )
        else:

            def all_reduced(*args, **kwargs):
                for chunk in model:
                    chunk.force_all_reduce = True
                kwargs["force_all_reduce"] = True
                return forward_backward(*args, **kwargs)

            step = optimizer.step

            def captured_step():
                save_grads(model)
                return step()

            optimizer.step = captured_step
            try:
                result = original_train_step(
                    forward_step_func, data_iterator, model, optimizer, scheduler, config, all_reduced, *a, **kw
                )
            finally:
                del optimizer.step
        losses, grad_norm = result[0], result[5]
        row = {
            "iteration": iteration[0],
            "lm loss": float(losses["lm loss"]) if "lm loss" in losses else None,
            "grad norm": float(grad_norm) if grad_norm is not None else None,
            "skipped": int(result[1]),
        }
        with (out / f"metrics_rank{rank}.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        return result

    training.get_megatron_optimizer, training.train_step = get_megatron_optimizer, train_step
    if pad:
        original_getitem = gpt_dataset.__getitem__

        def getitem(self, idx):
            sample = original_getitem(self, idx)
            if idx is not None:
                mask = sample["loss_mask"].clone()
                mask[mask.numel() - pad_length(int(idx), mask.numel()) :] = 0
                sample["loss_mask"] = mask
            return sample

        gpt_dataset.__getitem__ = getitem


def _launch_pretrain(out: Path, hooks: dict[str, str], flags: list[str]) -> None:
    """pretrain_gpt.py of the current directory with `install_hooks`; Megatron's dataset-helper compile is skipped
    when the helper is built (prepare.py builds it)."""
    import runpy

    root = Path.cwd()
    sys.path.insert(0, str(root))
    import megatron.core.datasets.utils as dataset_utils
    import megatron.training.training as training
    from megatron.core.datasets.gpt_dataset import GPTDataset

    if list((root / "megatron" / "core" / "datasets").glob("helpers_cpp*.so")):
        dataset_utils.compile_helpers = lambda: None
    _mark_sequence_parallel_norms()
    capture, pad, seed = int(hooks["capture"]), hooks["pad"] == "1", int(hooks["seed"])
    install_hooks(training, GPTDataset, out, _rank(), seed, capture, pad)
    sys.argv = ["pretrain_gpt.py", *flags]
    runpy.run_path(str(root / "pretrain_gpt.py"), run_name="__main__")


def _mark_sequence_parallel_norms() -> None:
    """Megatron's local spec without Apex builds its norms with WrappedTorchNorm, which refuses sequence parallelism
    (and MoE training with tensor parallelism requires it) only because a torch norm does not mark its weight: under
    sequence parallelism each tensor-parallel rank normalises its own slice of the sequence, so the replicated
    weight's gradient must be summed over the tensor-parallel group, which finalize_model_grads does for parameters
    marked `sequence_parallel` (Apex's FusedLayerNorm marks them). With sequence parallelism on, this builds the same
    torch norm and marks it; without, Megatron's own path runs. The restored megatron/ files stay as they are."""
    from megatron.core.transformer import torch_norm

    original = torch_norm.WrappedTorchNorm.__new__

    def __new__(cls, config, hidden_size, eps=1e-5, *args, **kwargs):
        if not config.sequence_parallel:
            return original(cls, config, hidden_size, eps, *args, **kwargs)
        norm_cls = {"LayerNorm": torch.nn.LayerNorm, "RMSNorm": torch.nn.RMSNorm}[config.normalization]
        norm = norm_cls(normalized_shape=hidden_size, eps=eps)
        for param in norm.parameters():
            param.sequence_parallel = True
        return norm

    torch_norm.WrappedTorchNorm.__new__ = staticmethod(__new__)


def _layer_worker(out: Path) -> None:
    """Per layout of LAYER_LAYOUTS: a tiny MoE GPTModel (local spec, fp32) with the weights of `fill`, one forward
    and backward of this rank's own batch (the same in both layouts), saved as layer_<layout>_rank<r>.pt: the
    per-token losses, every MoE layer's output, every parameter's local gradient by global name, the experts held."""
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel
    from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed
    from megatron.core.transformer.moe.moe_layer import MoELayer
    from megatron.core.transformer.transformer_config import TransformerConfig

    rank = _rank()
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl")
    torch.use_deterministic_algorithms(True)
    tokens = torch.randint(0, 256, (4, 33), generator=torch.Generator().manual_seed(100 + rank)).cuda()
    positions = torch.arange(32, device="cuda").repeat(4, 1)
    for layout, ep, dispatcher in LAYER_LAYOUTS:
        ps.initialize_model_parallel(expert_model_parallel_size=ep)
        model_parallel_cuda_manual_seed(1234)
        config = TransformerConfig(
            num_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            ffn_hidden_size=128,
            num_moe_experts=8,
            moe_router_topk=2,
            moe_ffn_hidden_size=64,
            moe_token_dispatcher_type=dispatcher,
            moe_router_load_balancing_type="aux_loss",
            moe_aux_loss_coeff=1e-2,
            expert_model_parallel_size=ep,
            add_bias_linear=False,
            normalization="RMSNorm",
            hidden_dropout=0.0,
            attention_dropout=0.0,
            bias_dropout_fusion=False,
            bias_activation_fusion=False,
            masked_softmax_fusion=False,
            apply_rope_fusion=False,
            persist_layer_norm=False,
            gradient_accumulation_fusion=False,
            deterministic_mode=True,
        )
        spec = get_gpt_layer_local_spec(num_experts=8, moe_grouped_gemm=False, normalization="RMSNorm")
        model = GPTModel(
            config=config,
            transformer_layer_spec=spec,
            vocab_size=256,
            max_sequence_length=32,
            position_embedding_type="rope",
        ).cuda()
        fill(model, SEED)
        moe_outputs = []
        for module in model.modules():
            if isinstance(module, MoELayer):
                module.register_forward_hook(lambda m, args, output: moe_outputs.append(output[0].detach().cpu()))
        losses = model(tokens[:, :-1].contiguous(), positions, None, labels=tokens[:, 1:].contiguous())
        losses.float().mean().backward()
        grads = {  # an expert no token reached has no .grad: its gradient is zero
            name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().clone()
            for name, p, _ in named_global_parameters(model)
        }
        experts = sorted({int(m.group(1)) for name in grads for m in [EXPERT.search(name)] if m})
        record = {"losses": losses.detach().cpu(), "moe_outputs": moe_outputs, "grads": grads, "experts": experts}
        torch.save(record, out / f"layer_{layout}_rank{rank}.pt")
        torch.cuda.synchronize()
        dist.barrier()
        ps.destroy_model_parallel()
    dist.destroy_process_group()


def _check_args(flags: list[str]) -> None:
    """Megatron's parse_args and validate_args of the current directory's checkout on `flags` (WORLD_SIZE from the
    environment); an exception ends the process with its traceback."""
    sys.path.insert(0, os.getcwd())
    from megatron.training.arguments import parse_args, validate_args

    sys.argv = ["pretrain_gpt.py", *flags]
    validate_args(parse_args(), {})
    print("VALID")


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "pretrain":
        _launch_pretrain(Path(sys.argv[2]), dict(arg.split("=", 1) for arg in sys.argv[3:6]), sys.argv[6:])
    elif mode == "layer":
        _layer_worker(Path(sys.argv[2]))
    elif mode == "args":
        _check_args(sys.argv[2:])
    else:
        sys.exit(
            "usage: megatron_parallel.py pretrain <out> capture=N pad=0|1 seed=N [flags] | layer <out> | args [flags]"
            f"; not {mode!r}"
        )
