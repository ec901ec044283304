"""Greedy decoding with a per-layer KV cache, for any model in reftrain.models.

Why it exists: a trained or imported checkpoint is checked end to end by comparing its greedy tokens
with transformers' `generate(do_sample=False)` on the same weights.
"""

from pathlib import Path

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


def load_for_inference(hf_config: dict, checkpoint: str = "", hf_dir: str = ""):
    """One process, fp32 on CPU: the model of `hf_config` with weights from a trained DCP checkpoint
    (a `step_N` folder, or a checkpoint root whose newest step is taken) or an HF safetensors folder."""
    import torch.distributed.checkpoint as dcp

    from reftrain import checkpoint as ckpt
    from reftrain.hf_checkpoint import load_hf_checkpoint
    from reftrain.models import build_model

    model = build_model(hf_config, device="cpu")
    model.init_weights(0)
    if hf_dir:
        load_hf_checkpoint(model, hf_dir)
    elif checkpoint:
        path = Path(checkpoint)
        if not (path / ".metadata").is_file():
            step = ckpt.latest_step(path)
            if step is None:
                raise FileNotFoundError(
                    f"{checkpoint}: no DCP checkpoint (step_N/.metadata) here; train with checkpoint.dir set"
                )
            path = ckpt.step_dir(path, step)
        state = {"model": model.state_dict()}
        dcp.load(state, checkpoint_id=str(path))  # only the model's entries are read
        model.load_state_dict(state["model"])
    else:
        raise ValueError("give --checkpoint DIR (trained with reftrain.train) or --hf DIR (HF safetensors)")
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    """`python -m reftrain.generate CONFIG.toml --checkpoint DIR | --hf DIR --prompt TEXT [--max-new-tokens N]`."""
    import argparse
    import json

    from reftrain.config import ConfigError, load_config
    from reftrain.tokenizer import load_tokenizer

    parser = argparse.ArgumentParser(prog="python -m reftrain.generate", description=main.__doc__)
    parser.add_argument("config", help="the training config (model and tokenizer come from it)")
    parser.add_argument("--checkpoint", default="", help="DCP checkpoint: checkpoint.dir of a run, or one step_N in it")
    parser.add_argument("--hf", default="", help="an HF folder (config-compatible safetensors)")
    parser.add_argument("--prompt", default="Once upon a time")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print token ids and text as one JSON line")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, overrides)
        hf_config = cfg.hf_config_dict()
        tokenizer, eos = load_tokenizer(cfg.data.tokenizer, hf_config["vocab_size"])
        model = load_for_inference(hf_config, args.checkpoint, args.hf)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}")
    prompt = torch.tensor([tokenizer.encode(args.prompt).ids])
    out = greedy_generate(model, prompt, args.max_new_tokens, eos_token_id=eos)[0].tolist()
    text = tokenizer.decode(out)
    print(json.dumps({"prompt_ids": prompt[0].tolist(), "ids": out, "text": text}) if args.json else text)


if __name__ == "__main__":
    main()
