"""Hugging Face safetensors checkpoints in and out of reftrain models.

Import accepts both the Hub's per-expert layout (`mlp.experts.{e}.gate_proj.weight`, Mixtral's
`block_sparse_moe.experts.{e}.w1.weight`), which is what published checkpoints contain, and
transformers-5's fused layout (`mlp.experts.gate_up_proj`). Export writes the Hub layout, so
`transformers.AutoModelForCausalLM.from_pretrained(directory)` and other tools load it.
"""

import json
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import save_file

from reftrain.models.common import assign_full, canonical_name
from reftrain.moe import GroupedExperts

# model_type -> (MoE block name on the Hub, gate, up and down projection names of one expert)
HUB_EXPERT_NAMES = {
    "qwen3_moe": ("mlp", "gate_proj", "up_proj", "down_proj"),
    "deepseek_v2": ("mlp", "gate_proj", "up_proj", "down_proj"),
    "mixtral": ("block_sparse_moe", "w1", "w3", "w2"),
}
IGNORED_KEY_SUFFIXES = ("rotary_emb.inv_freq",)  # written by some old checkpoints, recomputed here


def hub_name(model_type: str, name: str) -> str:
    block = HUB_EXPERT_NAMES[model_type][0]
    return name.replace(".mlp.", f".{block}.") if block != "mlp" else name


def our_name(model_type: str, key: str) -> str:
    block = HUB_EXPERT_NAMES[model_type][0]
    return key.replace(f".{block}.", ".mlp.") if block != "mlp" else key


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Map every tensor key to the safetensors file holding it (sharded via the index, or single files)."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        return {key: directory / file for key, file in weight_map.items()}
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files in {directory}: pass an HF checkpoint directory")
    key_to_file = {}
    for file in files:
        with safe_open(file, framework="pt") as f:
            key_to_file.update({key: file for key in f.keys()})
    return key_to_file


@torch.no_grad()
def load_hf_checkpoint(model, directory):
    """Fill every parameter of `model` from an HF checkpoint directory; errors on missing or unknown keys.

    Works on a pipeline stage (deleted modules are skipped), an expert-parallel rank (only its experts
    are read) and DTensor parameters (each rank keeps its shard).
    """
    directory = Path(directory)
    model_type = model.config.model_type
    _, gate, up, down = HUB_EXPERT_NAMES[model_type]
    key_to_file = checkpoint_files(directory)
    remaining = set(key_to_file)
    with ExitStack() as stack:
        handles = {file: stack.enter_context(safe_open(file, framework="pt")) for file in set(key_to_file.values())}

        def take(key):
            if key not in key_to_file:
                raise ValueError(f"{directory}: tensor {key!r} is missing; is this a {model_type} checkpoint?")
            remaining.discard(key)
            return handles[key_to_file[key]].get_tensor(key)

        def read(name, module, param):
            if name in key_to_file or not isinstance(module, GroupedExperts):
                key = name if name in key_to_file else hub_name(model_type, name)
                value = take(key)
                if isinstance(module, GroupedExperts):
                    value = value[module.expert_offset : module.expert_offset + param.shape[0]]
                return value
            prefix = hub_name(model_type, name.rsplit(".", 1)[0])
            experts = range(module.expert_offset, module.expert_offset + param.shape[0])
            if name.endswith("gate_up_proj"):
                return torch.stack(
                    [
                        torch.cat((take(f"{prefix}.{e}.{gate}.weight"), take(f"{prefix}.{e}.{up}.weight")))
                        for e in experts
                    ]
                )
            return torch.stack([take(f"{prefix}.{e}.{down}.weight") for e in experts])

        seen = set()
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                name = canonical_name(f"{module_name}.{param_name}" if module_name else param_name)
                if id(param) in seen:  # tied weights: lm_head shares embed_tokens
                    remaining.discard(name)
                    continue
                seen.add(id(param))
                value = read(name, module, param)
                if tuple(value.shape) != tuple(param.shape):
                    raise ValueError(
                        f"{directory}: {name} has shape {tuple(value.shape)}, the model expects {tuple(param.shape)}; "
                        "does config.json match these weights?"
                    )
                assign_full(param, value.to(param.dtype))
    unexpected = sorted(k for k in remaining if not _owned_elsewhere(model, our_name(model_type, k)))
    if unexpected:
        raise ValueError(
            f"{directory}: {len(unexpected)} tensors match no parameter of the model, e.g. {unexpected[:5]}"
        )


def _owned_elsewhere(model, key: str) -> bool:
    """True for a key whose module this process legitimately lacks: another pipeline stage's or EP rank's."""
    if key.endswith(IGNORED_KEY_SUFFIXES):
        return True
    module = model
    for part in key.split(".")[:-1]:
        if isinstance(module, GroupedExperts):
            return True
        if isinstance(module, torch.nn.ModuleDict) and part not in module:
            return True
        module = getattr(module, part, False)
        if module is None:
            return True
        if module is False:
            return False
    return False


@torch.no_grad()
def export_hf_checkpoint(model, directory, hf_config: dict, max_shard_bytes: int = 5 * 2**30):
    """Write config.json and safetensors (Hub per-expert layout; sharded with an index above `max_shard_bytes`).

    Every rank must call it when parameters are DTensors (gathering is collective); rank 0 writes.
    """
    _check_complete(model)
    directory = Path(directory)
    model_type = model.config.model_type
    writer = dist.get_rank() == 0 if dist.is_available() and dist.is_initialized() else True
    if writer:
        directory.mkdir(parents=True, exist_ok=True)
    written, current, current_bytes, dtype = [], {}, 0, None  # written: (temporary file, its keys, its bytes)

    def flush():
        file = directory / f"shard-{len(written):05d}.tmp"
        save_file(current, file, metadata={"format": "pt"})
        written.append((file, list(current), current_bytes))

    for name, param in model.named_parameters():
        name = canonical_name(name)
        full = param.full_tensor() if hasattr(param, "full_tensor") else param.detach()
        dtype = full.dtype
        if not writer:
            continue
        for key, tensor in _hub_tensors(model, model_type, name, full.cpu()).items():
            if current and current_bytes + tensor.nbytes > max_shard_bytes:
                flush()
                current, current_bytes = {}, 0
            current[key], current_bytes = tensor, current_bytes + tensor.nbytes
    if not writer:
        return
    flush()
    config = {"architectures": [type(model).__name__], **hf_config, "model_type": model_type}
    config["dtype"] = str(dtype).removeprefix("torch.")
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if len(written) == 1:
        written[0][0].rename(directory / "model.safetensors")
        return
    weight_map = {}
    for i, (file, keys, _) in enumerate(written, 1):
        final = f"model-{i:05d}-of-{len(written):05d}.safetensors"
        file.rename(directory / final)
        weight_map.update({key: final for key in keys})
    index = {"metadata": {"total_size": sum(size for _, _, size in written)}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _hub_tensors(model, model_type: str, name: str, full) -> dict:
    """One parameter as the Hub names it: stacked experts become one tensor per expert and projection."""
    module = model.get_submodule(name.rsplit(".", 1)[0])
    if not isinstance(module, GroupedExperts):
        return {hub_name(model_type, name): full.contiguous()}
    if full.shape[0] != module.num_experts:
        raise ValueError(f"{name}: holds {full.shape[0]} of {module.num_experts} experts; gather experts before export")
    _, gate, up, down = HUB_EXPERT_NAMES[model_type]
    prefix = hub_name(model_type, name.rsplit(".", 1)[0])
    pieces = {}
    for e in range(module.num_experts):
        if name.endswith("gate_up_proj"):
            g, u = full[e].chunk(2)
            pieces[f"{prefix}.{e}.{gate}.weight"], pieces[f"{prefix}.{e}.{up}.weight"] = g.clone(), u.clone()
        else:
            pieces[f"{prefix}.{e}.{down}.weight"] = full[e].clone()
    return pieces


def _check_complete(model):
    inner = model.model
    layers = len(inner.layers)
    if (
        inner.embed_tokens is None
        or inner.norm is None
        or model.lm_head is None
        or layers != model.config.num_hidden_layers
    ):
        raise ValueError("export_hf_checkpoint needs the whole model; a pipeline stage holds only part of it")
