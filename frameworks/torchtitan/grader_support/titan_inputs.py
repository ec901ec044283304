"""The word-level tokenizer and c4-style corpus that TorchTitan operate runs are given (TorchTitan's own test
assets are git-only, absent on the sdist route). Imported by the tasks' prepare steps (from
frameworks/torchtitan/grader_support/) and by their hidden tests (placed beside them: grading.toml `support`),
so both write the same bytes. Light on purpose: no CPU shims, only torch's generator and tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = [f"w{i}" for i in range(200)]


def write_tokenizer(folder: Path) -> None:
    """tokenizer.json (WordLevel over WORDS and <unk>/<bos>/<eos>, whitespace split) and tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(["<unk>", "<bos>", "<eos>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<bos>", "eos_token": "<eos>"}))


def write_corpus(path: Path, documents: int) -> None:
    """`documents` lines of {"text": ...}: 20-119 random words each, from a generator seeded with 7."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    with open(path, "w") as f:
        for _ in range(documents):
            ids = torch.randint(0, len(WORDS), (int(torch.randint(20, 120, (1,), generator=g)),), generator=g)
            f.write(json.dumps({"text": " ".join(WORDS[i] for i in ids)}) + "\n")
