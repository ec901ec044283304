"""The tokenizer: a HF `tokenizers` JSON file, or a byte-level BPE trained on the bundled corpus.

Why train one: the tiny example models have small vocabularies and the reference trainer must run
offline, so the default tokenizer is trained on first use (about a second) and cached.
"""

import os
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from reftrain.config import PACKAGE_ROOT, ConfigError

CORPUS = PACKAGE_ROOT / "data" / "corpus.txt"
CACHE_DIR = PACKAGE_ROOT / ".cache"
EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<|im_end|>", "<eos>", "<|end_of_text|>")


def train_bpe(text_files: list[Path], vocab_size: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(p) for p in text_files], trainer)
    return tok


def bundled_tokenizer(vocab_size: int) -> Tokenizer:
    """Byte-level BPE over data/corpus.txt with `vocab_size` entries, cached under .cache/."""
    path = CACHE_DIR / f"bpe-corpus-{vocab_size}.json"
    if not path.is_file():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tok = train_bpe([CORPUS], vocab_size)
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, suffix=".json")  # ranks may race: write then rename
        os.close(fd)
        tok.save(tmp)
        os.replace(tmp, path)
    return Tokenizer.from_file(str(path))


def load_tokenizer(path: str, vocab_size: int) -> tuple[Tokenizer, int]:
    """(tokenizer, eos id); `path` empty means the bundled BPE sized to the model's vocabulary."""
    if path:
        if not Path(path).is_file():
            raise ConfigError(
                f"data.tokenizer = {path!r} does not exist; give a tokenizers JSON file or leave it empty"
            )
        tok = Tokenizer.from_file(path)
    else:
        tok = bundled_tokenizer(min(vocab_size, 4096))
    eos = next((tok.token_to_id(t) for t in EOS_CANDIDATES if tok.token_to_id(t) is not None), None)
    if eos is None:
        raise ConfigError(
            f"tokenizer {path or 'bundled'} has no end-of-text token (one of {', '.join(EOS_CANDIDATES)})"
        )
    if tok.get_vocab_size() > vocab_size:
        raise ConfigError(
            f"tokenizer has {tok.get_vocab_size()} tokens but the model's vocab_size is {vocab_size}; "
            f"raise vocab_size in [model.overrides] or use a smaller tokenizer"
        )
    return tok, eos
