"""The gold solution's producer: runs the 4-step job of runs/routing/train.toml and writes the routing
trace to routing_trace/step_<n>.npz, as an agent would (forward hooks on the routers, no framework edit).

`--wrong` writes the plausible mistake the wrong patch ships: gate weights renormalised over the top-k,
as most MoE routers do, though this model's router (norm_topk_prob = false) does not.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path.cwd()))
from reftrain.config import load_config  # noqa: E402
from reftrain.train import setup, train_step  # noqa: E402

wrong = "--wrong" in sys.argv[1:]
cfg = load_config("runs/routing/train.toml")
run = setup(cfg)
routers = {
    int(re.fullmatch(r"model\.layers\.(\d+)\.mlp\.gate", name).group(1)): module
    for name, module in run.pm.model.named_modules()
    if re.fullmatch(r"model\.layers\.(\d+)\.mlp\.gate", name)
}
layers = sorted(routers)
calls = {layer: [] for layer in layers}
for layer in layers:
    routers[layer].register_forward_hook(
        lambda module, args, out, layer=layer: calls[layer].append((out[2].detach(), out[1].detach()))
    )
tokens = []
next_batch = run.loader.next_batch


def recording_next_batch():
    batch = next_batch()
    tokens.append(batch.inputs.reshape(-1))
    return batch


run.loader.next_batch = recording_next_batch
out_dir = Path("routing_trace")
out_dir.mkdir(exist_ok=True)
for step in range(cfg.training.steps):
    for layer in layers:
        calls[layer].clear()
    record = train_step(run, step)
    ids = torch.stack([torch.cat([c[0] for c in calls[layer]]) for layer in layers])
    weights = torch.stack([torch.cat([c[1] for c in calls[layer]]) for layer in layers]).float()
    if wrong:
        weights = weights / weights.sum(-1, keepdim=True)
    np.savez(
        out_dir / f"step_{record['step']}.npz",
        layers=np.array(layers, dtype=np.int64),
        tokens=tokens[-1].numpy().astype(np.int64),
        expert_ids=ids.numpy().astype(np.int64),
        gate_weights=weights.numpy().astype(np.float32),
    )
    print(f"step {record['step']}: loss {record['loss']:.4f}, wrote {out_dir}/step_{record['step']}.npz")
