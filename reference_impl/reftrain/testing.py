"""The distributed correctness ladder: a pp x dp x ep run against the single-device eager reference.

Why it exists: silent gradient bugs (a missing reduce, a double-counted expert, a wrong scale) leave
loss curves looking normal; only comparing every parameter's gradient with the eager reference on the
same weights and data catches them. Same weights (seeded init), same random tokens, same loss:
  * each micro-batch's loss: allclose(rtol, atol)
  * each parameter's gradient: 1 - 2*sum(x*y) / sum(x^2 + y^2) < grad_tol (0 = identical)
  * a parameter whose gradient is all zero fails (it would hide a broken path)
Run one rung: `run_distributed(ladder_rank, world_size, LadderCase(...))`; tests/test_ladder.py runs them all.
"""

from __future__ import annotations

import os
import socket
import tempfile
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reftrain.config import PACKAGE_ROOT, Config
from reftrain.data import Batch
from reftrain.launch import run_then_exit
from reftrain.loss import IGNORE_INDEX, TokenWeightedCrossEntropy, moe_blocks, set_aux_loss_scale
from reftrain.models import build_model
from reftrain.parallel.expert_parallel import is_expert_param
from reftrain.parallel.mesh import init_mesh


def tiny_config_path(model_type: str) -> Path:
    return PACKAGE_ROOT / "examples" / "models" / f"{model_type}_tiny.json"


@dataclass
class LadderCase:
    model_type: str
    pp: int = 1
    dp: int = 1
    ep: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    microbatches: int = 2
    micro_batch_size: int = 2
    seq_len: int = 16
    seed: int = 0
    aux_loss_coef: float = 0.01
    # Defaults sized to fp32 on CPU (GPU bf16 runs pass their own, wider ones). A correct layout differs
    # from the eager reference by summation order only; measured over the CPU ladder (3 models x 7
    # layouts, world sizes 1/2/4): micro-batch loss relative error <= 7.7e-8, gradient distance <= 4e-13.
    # The distance is about relative_error**2 / 2 (4e-13 ~ 9e-7 relative), so grad_tol 4e-9 allows 100x
    # the relative error (~9e-5), and loss_rtol 1e-5 ~130x. The old 1e-2 / 1e-3 let a gradient 14% off,
    # or a loss 0.1% off, pass.
    loss_rtol: float = 1e-5
    loss_atol: float = 1e-6
    grad_tol: float = 4e-9

    @property
    def world_size(self) -> int:
        return self.pp * self.dp * self.ep

    @property
    def name(self) -> str:
        return f"{self.model_type}-pp{self.pp}-dp{self.dp}-ep{self.ep}"

    def config(self) -> Config:
        cfg = Config()
        cfg.source = str(PACKAGE_ROOT / "examples" / "ladder.toml")
        cfg.model.config = str(tiny_config_path(self.model_type))
        cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep = self.pp, self.dp, self.ep
        cfg.training.seed, cfg.training.aux_loss_coef = self.seed, self.aux_loss_coef
        cfg.training.dtype, cfg.training.device = self.dtype, self.device
        cfg.data.source, cfg.data.seq_len = "synthetic", self.seq_len
        cfg.data.micro_batch_size = self.micro_batch_size
        cfg.data.global_batch_size = self.micro_batch_size * self.microbatches * self.dp * self.ep
        return cfg


def grad_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """1 - 2*sum(xy) / sum(x^2 + y^2): 0 when equal, ~1 when unrelated, 2 when opposite."""
    x, y = x.double().flatten(), y.double().flatten()
    denom = (x * x + y * y).sum()
    return float(1 - 2 * (x * y).sum() / denom) if denom > 0 else 0.0


def random_batch(case: LadderCase, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and labels for every data rank: [dp*ep, microbatches, micro_batch_size, seq_len]."""
    g = torch.Generator().manual_seed(case.seed + 1)
    shape = (case.dp * case.ep, case.microbatches, case.micro_batch_size, case.seq_len)
    return torch.randint(0, vocab_size, shape, generator=g), torch.randint(0, vocab_size, shape, generator=g)


def reference_step(cfg: Config, case: LadderCase, device, inputs, labels):
    """Eager single-device `reference_forward` over every (data rank, micro-batch): (losses, grads by name).

    The loss is normalised by the global count of non-ignored label positions, as the framework documents."""
    hf = cfg.hf_config_dict()
    model = build_model(hf, device="meta")
    model.to_empty(device=device)
    model.init_weights(case.seed)
    blocks = moe_blocks(model)
    set_aux_loss_scale(blocks, case.aux_loss_coef, len(blocks), inputs.shape[0] * inputs.shape[1])
    loss_fn = TokenWeightedCrossEntropy()
    loss_fn.global_tokens = int((labels != IGNORE_INDEX).sum())
    losses = torch.zeros(inputs.shape[:2], dtype=torch.float64)
    for d in range(inputs.shape[0]):
        for m in range(inputs.shape[1]):
            loss = loss_fn(model.reference_forward(inputs[d, m].to(device)), labels[d, m].to(device))
            loss.backward()
            losses[d, m] = loss.item()
    return losses, {n: p.grad.detach() for n, p in model.named_parameters()}


def full_grad(name: str, param, mesh) -> torch.Tensor:
    """This parameter's gradient as the single-device model would hold it (collective per param)."""
    grad = param.grad
    if grad is None:
        grad = torch.zeros_like(param)
    if hasattr(grad, "full_tensor"):
        grad = grad.full_tensor()
    if is_expert_param(name) and mesh.ep > 1:
        parts = [torch.empty_like(grad) for _ in range(mesh.ep)]
        dist.all_gather(parts, grad.contiguous(), group=mesh.ep_group)
        grad = torch.cat(parts)
    return grad


def ladder_rank(case: LadderCase) -> dict:
    """One rank of a ladder rung; raises AssertionError listing every mismatch, returns a summary."""
    from reftrain.train import build_parallel_model, forward_backward

    cfg = case.config()
    device = torch.device("cuda", torch.cuda.current_device()) if case.device == "cuda" else torch.device("cpu")
    mesh = init_mesh(case.pp, case.dp, case.ep, device.type)
    pm = build_parallel_model(cfg, mesh, device)
    vocab = cfg.hf_config_dict()["vocab_size"]
    inputs, labels = random_batch(case, vocab)
    r = mesh.data_rank
    losses = forward_backward(pm, Batch(inputs=inputs[r], labels=labels[r]))
    ref_losses, ref_grads = reference_step(cfg, case, device, inputs, labels)

    failures, loss_error = [], 0.0
    if pm.is_last_stage:
        got = torch.stack(losses).double().cpu()
        want = ref_losses[r]
        loss_error = float(((got - want).abs() / want.abs()).max())
        if not torch.allclose(got, want, rtol=case.loss_rtol, atol=case.loss_atol):
            failures.append(f"data rank {r}: micro-batch losses {got.tolist()} != reference {want.tolist()}")
    worst, names = 0.0, []
    for name, param in pm.model.named_parameters():
        grad = full_grad(name, param, mesh).to(device)
        names.append(name)
        ref = ref_grads[name]
        if grad.shape != ref.shape:
            failures.append(f"{name}: gradient shape {tuple(grad.shape)} != reference {tuple(ref.shape)}")
            continue
        if not grad.abs().sum() > 0:
            failures.append(f"{name}: gradient is all zero (reference norm {ref.norm():.3e})")
            continue
        dist_ = grad_distance(grad, ref)
        worst = max(worst, dist_)
        if not dist_ < case.grad_tol:
            failures.append(
                f"{name}: gradient distance {dist_:.3e} >= {case.grad_tol} "
                f"(norm {grad.norm():.4e} vs reference {ref.norm():.4e})"
            )
    all_names = [None] * dist.get_world_size()
    dist.all_gather_object(all_names, names)
    missing = set(ref_grads) - {n for per_rank in all_names for n in per_rank}
    if missing:
        failures.append(f"parameters held by no rank: {sorted(missing)}")
    if failures:
        raise AssertionError(f"{case.name} rank {dist.get_rank()}:\n  " + "\n  ".join(failures))
    return {
        "case": case.name,
        "worst_grad_distance": worst,
        "worst_loss_error": loss_error,
        "params_checked": len(names),
    }


COLLECTIVE_TIMEOUT = timedelta(minutes=3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, world_size: int, port: int, out_dir: str, fn, args, device_type: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    if device_type == "cuda":
        torch.cuda.set_device(rank)
    else:
        # A CPU run sees no GPU, so on a GPU host too `device = "auto"` means CPU: the same fp32 check on gloo, not
        # CUDA tensors on a gloo group (whose point-to-point ops refuse them) with every rank on GPU 0.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    # a rank stuck in a collective its peer never joins fails after this long instead of hanging the test
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    run_then_exit(_save_result, rank, out_dir, fn, args)


def _save_result(rank: int, out_dir: str, fn, args) -> None:
    try:
        result = fn(*args)
    except AssertionError as e:
        # every rank ran every case (each_case keeps them in lockstep): meet the others at the barrier so
        # none waits on a rank that left (NCCL, unlike gloo, never notices a peer that is gone)
        torch.save({"ok": False, "error": f"{e}\n{traceback.format_exc()}"}, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
        raise
    except BaseException as e:
        torch.save({"ok": False, "error": f"{e}\n{traceback.format_exc()}"}, Path(out_dir) / f"rank{rank}.pt")
        raise
    torch.save({"ok": True, "result": result}, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()  # no rank tears its connections down while a peer is still talking


def run_distributed(fn, world_size: int, *args, device_type: str = "cpu") -> list:
    """Runs `fn(*args)` in `world_size` fresh processes joined by torch.distributed; returns each rank's result.

    device_type "cpu": gloo, and the ranks see no GPU; "cuda": NCCL, rank r on GPU r.
    Raises AssertionError carrying every failing rank's message.
    """
    with tempfile.TemporaryDirectory() as out_dir:
        try:
            mp.start_processes(
                _child,
                args=(world_size, _free_port(), out_dir, fn, args, device_type),
                nprocs=world_size,
                start_method="spawn",
            )
        except mp.ProcessRaisedException:
            pass
        except mp.ProcessExitedException as e:
            raise AssertionError(f"a rank died: {e}") from None
        outcomes = [
            torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=False)
            if (Path(out_dir) / f"rank{r}.pt").is_file()
            else {"ok": False, "error": "no result"}
            for r in range(world_size)
        ]
    errors = [f"rank {r}: {o['error']}" for r, o in enumerate(outcomes) if not o["ok"]]
    if errors:
        raise AssertionError("\n".join(errors))
    return [o["result"] for o in outcomes]


def ladder_rungs(cases: list[LadderCase]) -> list[dict]:
    """Several ladder rungs of one world size: `run_distributed(ladder_rungs, world_size, cases)`."""
    return each_case(ladder_rank, cases)


def each_case(check, cases: list[LadderCase]) -> list[dict]:
    """Runs `check(case)` for several cases of one world size in the same processes (one start-up instead of
    many): `run_distributed(each_case, world_size, check, cases)`.

    A case's mismatches (AssertionError) do not stop the others, so every rank stays in lockstep through the
    collectives; all are reported together at the end.
    """
    results, failures = [], []
    for case in cases:
        try:
            results.append(check(case))
        except AssertionError as e:
            failures.append(str(e))
    if failures:
        raise AssertionError("\n".join(failures))
    return results


CPU_LAYOUTS = {1: [(1, 1, 1)], 2: [(2, 1, 1), (1, 1, 2), (1, 2, 1)], 4: [(2, 1, 2), (1, 2, 2), (2, 2, 1)]}
"""(pp, dp, ep) rungs by world size: pp x ep in {1,2}^2, plus dp = 2 wherever the processes allow."""


def cases_for(model_type: str, world_size: int, **kwargs) -> list[LadderCase]:
    return [LadderCase(model_type, pp=pp, dp=dp, ep=ep, **kwargs) for pp, dp, ep in CPU_LAYOUTS[world_size]]


def train_records(config_path: str, overrides: list[str]) -> list[dict]:
    """`reftrain.train.train` on a TOML config plus overrides (for `run_distributed` in tests)."""
    from reftrain.config import load_config
    from reftrain.train import train

    return train(load_config(config_path, overrides))


def expert_layout(model_type: str, ep: int) -> dict:
    """Builds the tiny model with ep = `ep` on this rank; reports what its experts hold (for EP tests)."""
    from reftrain.parallel.expert_parallel import grouped_experts
    from reftrain.train import build_parallel_model

    case = LadderCase(model_type, ep=ep)
    mesh = init_mesh(1, 1, ep, "cpu")
    pm = build_parallel_model(case.config(), mesh, torch.device("cpu"))
    experts = grouped_experts(pm.model)
    return {
        "num_experts": [e.num_experts for e in experts],
        "local": [e.num_local_experts for e in experts],
        "offset": [e.expert_offset for e in experts],
        "has_group": [e.ep_group is not None for e in experts],
        "shapes": [tuple(e.gate_up_proj.shape) for e in experts],
    }


def init_mesh_error(pp: int, dp: int, ep: int) -> str:
    """The error `init_mesh` raises for a mesh that does not match the launched processes ('' if none)."""
    try:
        init_mesh(pp, dp, ep, "cpu")
    except ValueError as e:
        return str(e)
    return ""
