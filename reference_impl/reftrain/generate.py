"""Greedy decoding with a per-layer KV cache, for any model in reftrain.models.

Why it exists: a trained or imported checkpoint is checked end to end by comparing its greedy tokens
with transformers' `generate(do_sample=False)` on the same weights.
"""

import torch


class KVCache:
    """What one attention layer has seen so far, concatenated along the sequence axis (dim -2).

    Standard attention stores (keys, values); MLA stores its compressed (latent, rope key) pair.
    """

    def __init__(self):
        self.first = None
        self.second = None

    @property
    def length(self) -> int:
        return 0 if self.first is None else self.first.shape[-2]

    def update(self, first, second):
        if self.first is not None:
            first, second = torch.cat((self.first, first), dim=-2), torch.cat((self.second, second), dim=-2)
        self.first, self.second = first, second
        return first, second


@torch.no_grad()
def greedy_generate(model, input_ids, max_new_tokens: int, eos_token_id: int | list[int] | None = None):
    """Append up to `max_new_tokens` argmax tokens to `input_ids` [B, S]; returns [B, S + new].

    Like transformers, a sequence that emitted an eos token is padded with eos afterwards, and
    decoding stops early once every sequence has.
    """
    eos = torch.tensor([] if eos_token_id is None else eos_token_id, device=input_ids.device).flatten()
    caches = {name: KVCache() for name in model.model.layers}
    tokens = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    logits = model(input_ids, caches=caches)
    for step in range(max_new_tokens):
        if step:
            logits = model(tokens[:, -1:], caches=caches)
        next_token = logits[:, -1].argmax(dim=-1)
        if eos.numel():
            next_token = torch.where(finished, eos[0], next_token)
            finished |= torch.isin(next_token, eos)
        tokens = torch.cat((tokens, next_token[:, None]), dim=1)
        if finished.all():
            break
    return tokens
