"""The models the trainer can build, by Hugging Face `model_type`.

To add one: write `reftrain/models/<model_type>.py` (see interface.py and
.agents/skills/add-new-model/SKILL.md) and add it to `MODELS`.
"""

import json
from pathlib import Path

import torch

from reftrain.models.deepseek_v2 import DeepseekV2Config, DeepseekV2ForCausalLM
from reftrain.models.mixtral import MixtralConfig, MixtralForCausalLM
from reftrain.models.qwen3_moe import Qwen3MoeConfig, Qwen3MoeForCausalLM

MODELS = {
    "qwen3_moe": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
    "mixtral": (MixtralConfig, MixtralForCausalLM),
    "deepseek_v2": (DeepseekV2Config, DeepseekV2ForCausalLM),
}


def load_hf_config(path) -> dict:
    """Read an HF config.json (a file, or a directory holding one) and check its `model_type`."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no model config at {path}: pass an HF config.json or a directory holding one")
    hf_config = json.loads(path.read_text())
    model_classes(hf_config, source=str(path))
    return hf_config


def model_classes(hf_config: dict, source: str = "the model config"):
    """(ConfigClass, ModelClass) for the config's `model_type`, or one error naming the known ones."""
    model_type = hf_config.get("model_type")
    if model_type not in MODELS:
        raise ValueError(
            f"{source}: model_type {model_type!r} is not supported; known model types: {sorted(MODELS)}. "
            "Set model_type to one of them, or add a model (reftrain/models/__init__.py:MODELS)."
        )
    return MODELS[model_type]


def build_model(hf_config: dict, device="meta", dtype: torch.dtype | None = None):
    """Construct the model for an HF config dict. On "meta", materialise with `to_empty` + `init_weights`."""
    config_class, model_class = model_classes(hf_config)
    config = config_class.from_dict(hf_config)
    with torch.device(device):
        model = model_class(config)
    return model.to(dtype) if dtype is not None else model
