"""Throughput benchmark: `python -m reftrain.bench CONFIG.toml [--section.key=value ...] --warmup 3 --steps 10`.

Trains on synthetic tokens (no data loading in the measurement) and prints ONE JSON line.
`--model-config config.json` benchmarks another model (an HF config.json) under the same run config;
`--repeats R` times R windows of --steps steps each, so the line states its own spread: tokens_per_s is
the median window, tokens_per_s_samples every window (one window's rate says nothing about noise).

FLOPs per step (fwd + bwd, PaLM convention, causal mask not discounted):
    flops = 6 * N_active * T  +  6 * L * H * S * (d_qk + d_v) * T
where T = tokens per step (global_batch_size * seq_len), N_active = parameters one token touches except
the input embedding (routed experts counted top_k of E times), L = layers, H = attention heads,
S = seq_len, d_qk / d_v = query-key and value head dims (= 12 * L * H * d_head * S per token when equal).
tflops = flops / step_time / world_size / 1e12 (per device); mfu = tflops / peak_tflops, with
peak_tflops defaulting to H100 SXM dense bf16 (989; pass --peak-tflops for other chips or dtypes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch
import torch.distributed as dist

from reftrain.config import Config, ConfigError, load_config
from reftrain.launch import run_then_exit
from reftrain.models import build_model
from reftrain.moe import GroupedExperts
from reftrain.train import setup, train_step

H100_BF16_DENSE_TFLOPS = 989.0


def attention_dims(hf: dict) -> tuple[int, int, int]:
    """(heads, d_qk, d_v) from an HF config (MLA models have distinct query-key and value head dims)."""
    heads = hf["num_attention_heads"]
    if "qk_nope_head_dim" in hf:
        return heads, hf["qk_nope_head_dim"] + hf["qk_rope_head_dim"], hf["v_head_dim"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    return heads, head_dim, head_dim


def param_counts(hf: dict) -> tuple[int, int]:
    """(total parameters, active non-embedding parameters per token) of the full model, counted on meta."""
    model = build_model(hf, device="meta")
    total = sum(p.numel() for p in model.parameters())
    active = total - model.model.embed_tokens.weight.numel()
    top_k = hf["num_experts_per_tok"]
    for m in model.modules():
        if isinstance(m, GroupedExperts):
            per_expert = (m.gate_up_proj.numel() + m.down_proj.numel()) // m.num_experts
            active -= per_expert * (m.num_experts - top_k)
    return total, active


def step_flops(cfg: Config) -> tuple[float, int, int]:
    """(FLOPs of one optimizer step, total params, active params) — see the module docstring."""
    hf = cfg.hf_config_dict()
    total, active = param_counts(hf)
    tokens = cfg.data.global_batch_size * cfg.data.seq_len
    heads, d_qk, d_v = attention_dims(hf)
    attn = 6 * hf["num_hidden_layers"] * heads * cfg.data.seq_len * (d_qk + d_v)
    return (6 * active + attn) * tokens, total, active


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m reftrain.bench", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="TOML config, e.g. examples/tiny_qwen3_moe.toml")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per window")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="timed windows of --steps steps; tokens_per_s is their median (default 1)",
    )
    parser.add_argument(
        "--model-config",
        default="",
        metavar="CONFIG_JSON",
        help="HF config.json to benchmark instead of the TOML's [model] config (path from here)",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H100_BF16_DENSE_TFLOPS,
        help="per-device peak for MFU (default: H100 dense bf16, 989)",
    )
    parser.add_argument(
        "--profile",
        default="",
        metavar="FILE",
        help="after timing, profile one more step and write its kernel-time table to FILE",
    )
    return parser.parse_known_args(argv)


def profile_step(run, step: int, path: str, rows: int = 40) -> None:
    """One step under torch.profiler; the table (by self device time) shows where a step's time goes."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.pm.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train_step(run, step)
    sort_by = "self_device_time_total" if run.pm.device.type == "cuda" else "self_cpu_time_total"
    with open(path, "w") as f:
        f.write(prof.key_averages().table(sort_by=sort_by, row_limit=rows, max_name_column_width=90))


def bench(cfg: Config, warmup: int, steps: int, peak_tflops: float, profile: str = "", repeats: int = 1) -> dict:
    if steps < 1 or repeats < 1 or warmup < 0:
        raise ConfigError(f"--steps {steps} and --repeats {repeats} must be >= 1 and --warmup {warmup} >= 0")
    cfg.data.source = "synthetic"
    cfg.checkpoint.dir, cfg.checkpoint.resume = "", False
    cfg.training.steps = warmup + steps * repeats
    hf = cfg.hf_config_dict()
    run = setup(cfg)
    for step in range(warmup):
        train_step(run, step)
    if run.pm.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    records = [train_step(run, warmup + i) for i in range(steps * repeats)]
    tokens = cfg.data.global_batch_size * cfg.data.seq_len
    samples = [
        tokens * steps / sum(r["step_time_s"] for r in records[w * steps : (w + 1) * steps]) for w in range(repeats)
    ]
    tokens_per_s = statistics.median(samples)
    step_time = tokens / tokens_per_s
    world = dist.get_world_size()
    flops, total, active = step_flops(cfg)
    tflops = flops / step_time / world / 1e12
    reserved = torch.cuda.max_memory_reserved() / 2**30 if run.pm.device.type == "cuda" else 0.0
    peak_mem = torch.tensor([max(r["peak_mem_gb"] for r in records), reserved], device=run.pm.device)
    if world > 1:
        dist.all_reduce(peak_mem, op=dist.ReduceOp.MAX)
    if profile:
        profile_step(run, warmup + steps, profile)
    return {
        "tokens_per_s": tokens_per_s,
        "tokens_per_s_per_device": tokens_per_s / world,
        "tokens_per_s_samples": samples,
        "tokens_per_s_min": min(samples),
        "tokens_per_s_max": max(samples),
        "model_type": hf.get("model_type"),
        "layout": f"pp={cfg.parallel.pp} dp={cfg.parallel.dp} ep={cfg.parallel.ep}",
        "tflops": tflops,
        "mfu": tflops / peak_tflops,
        "peak_tflops": peak_tflops,
        "peak_mem_gb": float(peak_mem[0]),
        "peak_reserved_gb": float(peak_mem[1]),
        "step_time_s": step_time,
        "final_loss": records[-1]["loss"],
        "total_params": total,
        "active_params": active,
        "world_size": world,
        "device": str(run.pm.device),
        "dtype": str(run.pm.dtype),
        "warmup": warmup,
        "steps": steps,
        "repeats": repeats,
        "config": cfg.to_dict(),
    }


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        cfg = load_config(args.config, overrides)
        if args.model_config:
            if not os.path.isfile(args.model_config):
                raise ConfigError(f"--model-config {args.model_config}: no such file; pass an HF config.json")
            cfg.model.config = os.path.abspath(args.model_config)
        result = bench(cfg, args.warmup, args.steps, args.peak_tflops, args.profile, args.repeats)
        if dist.get_rank() == 0:
            print(json.dumps(result), flush=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_then_exit(main)
