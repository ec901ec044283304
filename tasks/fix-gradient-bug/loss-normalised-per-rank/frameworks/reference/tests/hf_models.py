"""Tiny transformers models with random weights, and ours holding the same weights (for parity tests)."""

import json
from pathlib import Path

import torch
import transformers

from reftrain.models import build_model

MODEL_TYPES = ("qwen3_moe", "mixtral", "deepseek_v2")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"
HF_CLASSES = {
    "qwen3_moe": (transformers.Qwen3MoeConfig, transformers.Qwen3MoeForCausalLM),
    "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM),
    "deepseek_v2": (transformers.DeepseekV2Config, transformers.DeepseekV2ForCausalLM),
}


def tiny_config(model_type: str, **overrides) -> dict:
    return {**json.loads((EXAMPLES / f"{model_type}_tiny.json").read_text()), **overrides}


def hf_model(hf_config: dict, seed: int = 0, std: float = 0.15):
    """An eager fp32 transformers model whose every weight is random (norms around 1), so routing and
    every projection matter to the output."""
    config_class, model_class = HF_CLASSES[hf_config["model_type"]]
    kwargs = {k: v for k, v in hf_config.items() if k not in ("model_type", "architectures")}
    model = model_class(config_class(**kwargs, attn_implementation="eager")).float().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            param.copy_(1 + 0.1 * noise if "norm" in name else std * noise)
    return model


def our_model(hf, hf_config: dict):
    model = build_model(hf_config, device="cpu")
    model.load_state_dict(hf.state_dict(), strict=True)
    return model.eval()


def tokens(batch: int = 2, seq: int = 12, vocab: int = 512, seed: int = 1):
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))
