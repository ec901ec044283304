"""The gold solution's producer: runs the 4-iteration job of runs/routing/train.toml through its own launcher
(runs/routing/launch.py, Megatron's pretrain_gpt.py) on the GPU and writes the routing trace to
routing_trace/step_<n>.npz, as an agent would: forward hooks on the routers and the embedding, installed by
wrapping megatron.training.training.train_step; no framework or config edit.

Megatron's router sees the tokens [s, b] (position-major); the instruction wants them sequence by sequence,
so every [s*b, ...] tensor is reordered to [b*s, ...]. `--wrong` writes the plausible mistake the wrong patch
ships: the tokens and their routing left in Megatron's [s, b] order.
Usage, from a prepared checkout's root: python solve.py [--wrong]   (tasks/operate/make_patches.py runs it)
"""

import os
import re
import runpy
import sys
from pathlib import Path

if "LOCAL_RANK" not in os.environ:  # re-run under torchrun, which pretrain_gpt.py expects
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=1", __file__]
    os.execv(sys.executable, cmd + sys.argv[1:])

import megatron.training.training as training  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding  # noqa: E402
from megatron.core.transformer.moe.router import TopKRouter  # noqa: E402

wrong = "--wrong" in sys.argv[1:]
OUT = Path("routing_trace")
routers, seen, tokens = {}, {}, []


def reorder(t, s, b):
    return t if wrong else t.reshape(s, b, *t.shape[1:]).transpose(0, 1).reshape(s * b, *t.shape[1:])


def on_router(layer):
    def hook(module, args, kwargs, output):
        s, b = args[0].shape[:2]
        probs, routing_map = output
        seen[layer].append((reorder(probs.detach().float(), s, b), reorder(routing_map, s, b)))

    return hook


def on_embedding(module, args, kwargs, output):
    input_ids = kwargs.get("input_ids", args[0] if args else None)  # [b, s]
    tokens.append(input_ids.detach().transpose(0, 1).reshape(-1) if wrong else input_ids.detach().reshape(-1))


def train_step(*args, **kwargs):
    if not routers:
        for name, module in args[2][0].named_modules():
            if isinstance(module, TopKRouter):
                layer = int(re.search(r"decoder\.layers\.(\d+)\.", name).group(1))
                routers[layer], seen[layer] = module, []
                module.register_forward_hook(on_router(layer), with_kwargs=True)
            elif isinstance(module, LanguageModelEmbedding):
                module.register_forward_hook(on_embedding, with_kwargs=True)
    for calls in seen.values():
        calls.clear()
    tokens.clear()
    result = step_once(*args, **kwargs)
    n = kwargs["iteration"] + 1  # the iteration the log prints
    layers = sorted(seen)
    probs = torch.stack([torch.cat([p for p, _ in seen[i]]) for i in layers])
    weights, ids = probs.topk(routers[layers[0]].topk, dim=-1)  # sorted, highest first; unrouted experts are 0
    OUT.mkdir(exist_ok=True)
    np.savez(
        OUT / f"step_{n}.npz",
        layers=np.array(layers, dtype=np.int64),
        tokens=torch.cat(tokens).cpu().numpy().astype(np.int64),
        expert_ids=ids.cpu().numpy().astype(np.int64),
        gate_weights=weights.cpu().numpy().astype(np.float32),
    )
    return result


step_once, training.train_step = training.train_step, train_step
sys.argv = ["runs/routing/launch.py"]
runpy.run_path("runs/routing/launch.py", run_name="__main__")
