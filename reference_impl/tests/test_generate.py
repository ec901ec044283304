"""Greedy decoding with our KV cache gives transformers' `generate(do_sample=False)` tokens."""

import pytest
import torch
from hf_models import MODEL_TYPES, hf_model, our_model, tiny_config, tokens

from reftrain.generate import KVCache, greedy_generate


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_greedy_tokens_equal_transformers_generate(model_type):
    config = tiny_config(model_type)
    hf = hf_model(config)
    ours = our_model(hf, config)
    prompt = tokens(batch=2, seq=7)
    expected = hf.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    actual = greedy_generate(ours, prompt, max_new_tokens=12)
    assert actual.shape == (2, 7 + 12)
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_eos_stops_and_pads_like_transformers(model_type):
    config = tiny_config(model_type)
    hf = hf_model(config)
    ours = our_model(hf, config)
    prompt = tokens(batch=2, seq=5, seed=3)
    free_run = greedy_generate(ours, prompt, max_new_tokens=8)
    eos = int(free_run[0, 5 + 2])  # the first sequence's third new token
    expected = hf.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=eos, pad_token_id=eos)
    actual = greedy_generate(ours, prompt, max_new_tokens=8, eos_token_id=eos)
    assert torch.equal(actual, expected)
    assert int(actual[0, 5 + 2]) == eos and bool((actual[0, 5 + 2 :] == eos).all())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_cached_decoding_equals_full_recompute(model_type):
    """Logits of the last token with the cache equal a full forward over the whole sequence."""
    config = tiny_config(model_type)
    ours = our_model(hf_model(config), config)
    ids = tokens(batch=2, seq=10)
    caches = {name: KVCache() for name in ours.model.layers}
    with torch.no_grad():
        ours(ids[:, :6], caches=caches)
        ours(ids[:, 6:9], caches=caches)
        last = ours(ids[:, 9:], caches=caches)
        full = ours(ids)
    assert all(cache.length == 10 for cache in caches.values())
    # fp32 on CPU: the gold differs by <= 3.1e-6 (7e-7 relative); ~10x headroom.
    torch.testing.assert_close(last[:, -1], full[:, -1], atol=1e-5, rtol=1e-5)
