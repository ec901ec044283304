"""Runs a rebuilt runs/routing (argv[1]: its launch.py) from the graded checkout (the current directory) under
torchrun, with forward hooks on every TopKRouter and on the embedding, and saves per iteration n
{layers, tokens, expert_ids, gate_weights, logits, num_experts} to $ATEBENCH_TRACE_OUT/step_<n>.pt, tokens in
the instruction's order (sequence by sequence). Usage (under torchrun): trace_reference.py <launch.py>
"""

import os
import re
import runpy
import sys

import megatron.training.training as training
import torch
from megatron.core.models.common.embeddings.language_model_embedding import LanguageModelEmbedding
from megatron.core.transformer.moe.router import TopKRouter

OUT = os.environ["ATEBENCH_TRACE_OUT"]
LAYER = re.compile(r"decoder\.layers\.(\d+)\.")
calls: dict[int, list] = {}
tokens: list[torch.Tensor] = []
routers: dict[int, TopKRouter] = {}
step = [0]


def sequence_major(t: torch.Tensor, s: int, b: int) -> torch.Tensor:
    """[s*b, ...] in Megatron's [s, b] order -> [b*s, ...], row b * s_len + s."""
    return t.reshape(s, b, *t.shape[1:]).transpose(0, 1).reshape(s * b, *t.shape[1:])


def router_hook(layer: int):
    def hook(module, args, kwargs, output):
        hidden = args[0] if args else kwargs["input"]
        s, b = hidden.shape[:2]
        probs, routing_map = output
        with torch.no_grad():
            logits = module.gating(hidden).reshape(s * b, -1).float()
        calls[layer].append([sequence_major(x.detach(), s, b) for x in (probs.float(), routing_map, logits)])

    return hook


def embedding_hook(module, args, kwargs, output):
    input_ids = args[0] if args else kwargs["input_ids"]
    tokens.append(input_ids.detach().reshape(-1))  # [b, s]: already sequence by sequence


def traced_train_step(*args, **kwargs):
    if not routers:
        model = args[2][0]
        for name, module in model.named_modules():
            if isinstance(module, TopKRouter):
                layer = int(LAYER.search(name).group(1))
                routers[layer] = module
                calls[layer] = []
                module.register_forward_hook(router_hook(layer), with_kwargs=True)
            elif isinstance(module, LanguageModelEmbedding):
                module.register_forward_hook(embedding_hook, with_kwargs=True)
    for layer in calls:
        calls[layer].clear()
    tokens.clear()
    result = original_train_step(*args, **kwargs)
    step[0] += 1
    layers = sorted(calls)
    probs = torch.stack([torch.cat([c[0] for c in calls[i]]) for i in layers])
    routing_map = torch.stack([torch.cat([c[1] for c in calls[i]]) for i in layers])
    logits = torch.stack([torch.cat([c[2] for c in calls[i]]) for i in layers])
    k = routers[layers[0]].topk
    weights, ids = probs.topk(k, dim=-1)  # the selected experts' weights are > 0, the others' exactly 0
    assert routing_map.gather(-1, ids).all(), "a top-k weight is not one of the routed experts"
    assert int(routing_map.sum(-1).max()) == k, "a token is routed to more than k experts"
    torch.save(
        {
            "layers": torch.tensor(layers, dtype=torch.int64),
            "tokens": torch.cat(tokens).cpu().to(torch.int64),
            "expert_ids": ids.cpu().to(torch.int64),
            "gate_weights": weights.cpu().float(),
            "logits": logits.cpu(),
            "num_experts": probs.shape[-1],
        },
        os.path.join(OUT, f"step_{step[0]}.pt"),
    )
    return result


original_train_step = training.train_step
training.train_step = traced_train_step  # train() looks it up in the module at every iteration

if __name__ == "__main__":
    launch = sys.argv[1]
    sys.argv = [launch]
    runpy.run_path(launch, run_name="__main__")
