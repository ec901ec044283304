"""What a model must provide for the trainer, pipeline/expert parallelism, checkpoints and generation.

Read this before adding a model (then .agents/skills/add-new-model/SKILL.md). Nothing checks these
protocols at runtime; the engine calls the named attributes and methods directly.
"""

from typing import Protocol

import torch
from torch import nn


class ModelConfig(Protocol):
    """A dataclass whose fields carry the Hugging Face config.json names and defaults."""

    model_type: str  # ClassVar: the HF `model_type`, the key in reftrain.models.MODELS
    num_hidden_layers: int
    initializer_range: float

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Read every value of an HF config.json the model uses; raise one clear error for unsupported ones."""

    def to_dict(self) -> dict: ...


class DecoderLayer(Protocol):
    def __call__(self, hidden_states: torch.Tensor, position_embeddings, cache=None) -> torch.Tensor:
        """Fast path: SDPA attention, `GroupedExperts.forward`. [B, S, H] -> [B, S, H]."""

    def reference_forward(self, hidden_states: torch.Tensor, position_embeddings, cache=None) -> torch.Tensor:
        """Eager oracle: explicit softmax(QK^T) attention and `GroupedExperts.reference_forward`."""


class SparseMoeBlock(Protocol):
    """Routes as HF does, then calls `self.experts` (a reftrain.moe.GroupedExperts)."""

    experts: nn.Module
    aux_loss_scale: float  # set by the trainer; 0.0 adds no aux-loss gradient
    last_aux_loss: torch.Tensor | None  # detached load-balancing loss of the last forward


class Backbone(Protocol):
    """`<Name>Model`. Pipeline parallelism deletes layers from `layers` and sets the others to None."""

    embed_tokens: nn.Embedding | None
    layers: nn.ModuleDict  # keyed "0", "1", ...: state_dict keys equal HF's `model.layers.N....`
    norm: nn.Module | None


class CausalLM(Protocol):
    """`<Name>ForCausalLM`: parameter names and shapes equal transformers', so HF state_dicts load strictly."""

    config: ModelConfig
    model: Backbone
    lm_head: nn.Linear | None

    def __call__(self, inputs: torch.Tensor, caches: dict | None = None) -> torch.Tensor:
        """Token ids [B, S] if `model.embed_tokens` exists, else hidden states [B, S, H].

        Positions are arange(S) (offset by the cache length); attention is causal over the whole
        packed sequence. Returns logits if `lm_head` exists, else hidden states (after `norm` if present).
        `caches` maps layer names to reftrain.generate.KVCache objects.
        """

    def reference_forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The whole model through every layer's `reference_forward`."""

    def init_weights(self, generator_or_seed) -> None:
        """Deterministic init of every parameter (stacked experts too); works after `to_empty` from meta."""
