"""Loads a converted Mixtral checkpoint into Megatron's GPTModel (local spec, the model flags from the checkpoint's
saved arguments) and the source checkpoint into transformers, on one GPU in fp32, and writes what the hidden tests
compare to a .pt file. Usage (under torchrun, from the graded checkout's root, PYTHONPATH including it):

    mixtral_parity.py <megatron checkpoint dir> <HF checkpoint dir> <out.pt>

The name mapping HF -> Megatron is the grader's own (below), not the agent's loader: the converted weights, the
logits, the loss and every gradient are checked through it. Dropout is off on both sides and the router's
auxiliary loss is off in Megatron (transformers' loss without output_router_logits has none), so the two models
compute the same function when the conversion is right.
"""

import json
import sys

import torch

CKPT, HF_DIR, OUT = sys.argv[1:4]
HF_CONFIG = json.load(open(f"{HF_DIR}/config.json"))

import megatron.core.datasets.utils as dataset_utils  # noqa: E402

dataset_utils.compile_helpers = lambda: None  # no dataset here
from megatron.training.arguments import parse_and_validate_args  # noqa: E402

# Model flags come from the checkpoint's saved arguments; these are the run's. Megatron keeps no norm epsilon in
# a checkpoint's arguments, so it comes from the HF config.
FLAGS = """--use-checkpoint-args --ckpt-format torch --finetune --no-load-optim --no-load-rng
 --no-use-tokenizer-model-from-checkpoint-args --tokenizer-type NullTokenizer --micro-batch-size 2
 --global-batch-size 2 --train-iters 1 --lr 0 --mock-data --transformer-impl local --attention-backend unfused
 --moe-token-dispatcher-type alltoall --moe-router-load-balancing-type none --moe-aux-loss-coeff 0
 --no-gradient-accumulation-fusion --no-rope-fusion --no-bias-swiglu-fusion --no-bias-dropout-fusion
 --no-masked-softmax-fusion --no-persist-layer-norm --seed 1234""".split()
sys.argv = ["mixtral_parity.py", *FLAGS, "--load", CKPT, "--vocab-size", str(HF_CONFIG["vocab_size"])]
sys.argv += ["--norm-epsilon", str(HF_CONFIG["rms_norm_eps"])]
args = parse_and_validate_args()
args.hidden_dropout = args.attention_dropout = 0.0  # a training choice, not the architecture: off on both sides

from functools import partial  # noqa: E402

from gpt_builders import gpt_builder  # noqa: E402
from megatron.training import get_model  # noqa: E402
from megatron.training.checkpointing import load_checkpoint  # noqa: E402
from megatron.training.initialize import initialize_megatron  # noqa: E402
from model_provider import model_provider  # noqa: E402
from transformers import MixtralForCausalLM  # noqa: E402

initialize_megatron()
model = get_model(partial(model_provider, gpt_builder), wrap_with_ddp=False)
load_checkpoint(model, None, None)
megatron_model = model[0]
while hasattr(megatron_model, "module"):  # Float16Module and the like; fp32 has none, but be safe
    megatron_model = megatron_model.module
megatron_model.train()

hf = MixtralForCausalLM.from_pretrained(HF_DIR, dtype=torch.float32).cuda().train()
c = hf.config
heads, groups = c.num_attention_heads, c.num_key_value_heads
head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads


def hf_to_megatron(hf_tensors: dict) -> dict:
    """HF (transformers 5 layout) tensors keyed by Megatron's parameter names."""
    out = {
        "embedding.word_embeddings.weight": hf_tensors["model.embed_tokens.weight"],
        "decoder.final_layernorm.weight": hf_tensors["model.norm.weight"],
        "output_layer.weight": hf_tensors["lm_head.weight"],
    }
    for i in range(c.num_hidden_layers):
        h, m = f"model.layers.{i}.", f"decoder.layers.{i}."
        q = hf_tensors[h + "self_attn.q_proj.weight"].reshape(groups, heads // groups * head_dim, -1)
        k = hf_tensors[h + "self_attn.k_proj.weight"].reshape(groups, head_dim, -1)
        v = hf_tensors[h + "self_attn.v_proj.weight"].reshape(groups, head_dim, -1)
        out[m + "self_attention.linear_qkv.weight"] = torch.cat([q, k, v], dim=1).reshape(-1, c.hidden_size)
        out[m + "self_attention.linear_proj.weight"] = hf_tensors[h + "self_attn.o_proj.weight"]
        out[m + "input_layernorm.weight"] = hf_tensors[h + "input_layernorm.weight"]
        out[m + "pre_mlp_layernorm.weight"] = hf_tensors[h + "post_attention_layernorm.weight"]
        out[m + "mlp.router.weight"] = hf_tensors[h + "mlp.gate.weight"]
        for e in range(c.num_local_experts):
            expert = f"{m}mlp.experts.local_experts.{e}."
            out[expert + "linear_fc1.weight"] = hf_tensors[h + "mlp.experts.gate_up_proj"][e]  # [gate; up]
            out[expert + "linear_fc2.weight"] = hf_tensors[h + "mlp.experts.down_proj"][e]
    return out


def relative_errors(ours: dict, theirs: dict) -> dict:
    return {
        name: float((ours[name].float() - theirs[name].float()).norm() / theirs[name].float().norm().clamp_min(1e-30))
        for name in sorted(theirs)
        if name in ours and ours[name] is not None and ours[name].shape == theirs[name].shape
    }


megatron_params = dict(megatron_model.named_parameters())
expected = hf_to_megatron(dict(hf.named_parameters()))
result = {
    "megatron_names": sorted(megatron_params),
    "expected_names": sorted(expected),
    "shapes": {n: list(p.shape) for n, p in megatron_params.items()},
    "expected_shapes": {n: list(t.shape) for n, t in expected.items()},
    "weight_errors": relative_errors({n: p.detach() for n, p in megatron_params.items()}, expected),
}

# Same tokens through both: logits, then the loss of the labels (Megatron's per-token cross entropy vs
# transformers' mean), then every gradient of a fixed projection of the logits.
torch.manual_seed(0)
batch, seq = 2, 24
tokens = torch.randint(0, c.vocab_size, (batch, seq + 1), device="cuda")
inputs, labels = tokens[:, :-1], tokens[:, 1:]
position_ids = torch.arange(seq, device="cuda").unsqueeze(0).expand(batch, -1)
causal_mask = torch.triu(torch.ones(seq, seq, dtype=torch.bool, device="cuda"), diagonal=1)[None, None]

logits = megatron_model(inputs, position_ids, causal_mask)
hf_logits = hf(input_ids=inputs).logits
result["logits"] = logits.detach().float().cpu()
result["hf_logits"] = hf_logits.detach().float().cpu()
with torch.no_grad():
    per_token = megatron_model(inputs, position_ids, causal_mask, labels=labels)
    result["loss"] = float(per_token.float().mean())
    flat = hf_logits.reshape(-1, c.vocab_size).float()
    result["hf_loss"] = float(torch.nn.functional.cross_entropy(flat, labels.reshape(-1)))

weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1)).cuda()
(logits.float() * weights).sum().backward()
(hf_logits.float() * weights).sum().backward()
grads = {n: (p.grad.detach() if p.grad is not None else None) for n, p in megatron_params.items()}
result["without_grad"] = sorted(n for n, g in grads.items() if g is None)
result["grad_errors"] = relative_errors(grads, hf_to_megatron({n: p.grad for n, p in hf.named_parameters()}))
torch.save(result, OUT)
print("mixtral_parity: wrote", OUT)
