"""Packed-sequence batches: documents joined with EOS and cut into seq_len+1 token windows.

Why index-based: the batch of step s for data rank r is a pure function of (seed, sequences consumed,
layout), so runs are deterministic, resume exactly, and any dp/ep layout sees the same global batch.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from reftrain.config import Config, ConfigError
from reftrain.tokenizer import CORPUS, load_tokenizer


def read_documents(paths: list[Path]) -> list[str]:
    """Text of every document: .txt (blank-line separated), .jsonl ("text" field), .parquet ("text" column)."""
    docs = []
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"data.paths: {path} does not exist; list existing .txt, .jsonl or .parquet files")
        if path.suffix == ".txt":
            docs += [d.strip() for d in path.read_text().split("\n\n") if d.strip()]
        elif path.suffix == ".jsonl":
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if "text" not in row:
                        raise ConfigError(f'{path}:{n}: a .jsonl line needs a "text" field')
                    docs.append(row["text"])
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            if "text" not in table.column_names:
                raise ConfigError(f'{path}: a .parquet file needs a "text" column (has {table.column_names})')
            docs += [t for t in table.column("text").to_pylist() if t]
        else:
            raise ConfigError(f"data.paths: {path} has suffix {path.suffix!r}; use .txt, .jsonl or .parquet")
    return docs


def pack(docs: list[str], tokenizer, eos: int, seq_len: int) -> torch.Tensor:
    """[num_windows, seq_len + 1] token windows of the EOS-joined documents (the tail is dropped)."""
    ids = []
    for enc in tokenizer.encode_batch(docs):
        ids += enc.ids
        ids.append(eos)
    n = len(ids) // (seq_len + 1)
    if n == 0:
        raise ConfigError(
            f"the data has {len(ids)} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}; "
            f"add text or lower data.seq_len"
        )
    return torch.tensor(ids[: n * (seq_len + 1)], dtype=torch.long).view(n, seq_len + 1)


@dataclass
class Batch:
    """One data rank's share of a step: [microbatches, micro_batch_size, seq_len] each."""

    inputs: torch.Tensor
    labels: torch.Tensor


class PackedLoader:
    """Serves each step's global batch, sharded over data ranks, reshuffled every epoch."""

    def __init__(self, cfg: Config, vocab_size: int, data_rank: int = 0, num_data_ranks: int = 1):
        self.cfg, self.vocab_size = cfg, vocab_size
        self.data_rank, self.num_data_ranks = data_rank, num_data_ranks
        self.seed = cfg.training.seed
        self.position = 0  # sequences consumed by all data ranks together
        self._epoch_order = (-1, None)
        d = cfg.data
        if d.source == "synthetic":
            self.windows = None
        else:
            tokenizer, eos = load_tokenizer(d.tokenizer, vocab_size)
            paths = [CORPUS] if d.source == "corpus" else [Path(p) for p in d.paths]
            self.windows = pack(read_documents(paths), tokenizer, eos, d.seq_len)

    def sequence(self, index: int) -> torch.Tensor:
        seq_len = self.cfg.data.seq_len
        if self.windows is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            return torch.randint(0, self.vocab_size, (seq_len + 1,), generator=g)
        epoch, i = divmod(index, len(self.windows))
        return self.windows[self._order(epoch)[i]]

    def _order(self, epoch: int) -> torch.Tensor:
        """The window order of `epoch` (a seeded permutation, cached for the current epoch)."""
        if self._epoch_order[0] != epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._epoch_order = (epoch, torch.randperm(len(self.windows), generator=g))
        return self._epoch_order[1]

    def next_batch(self) -> Batch:
        d = self.cfg.data
        per_rank = d.global_batch_size // self.num_data_ranks
        start = self.position + self.data_rank * per_rank
        seqs = torch.stack([self.sequence(start + i) for i in range(per_rank)])
        self.position += d.global_batch_size
        seqs = seqs.view(per_rank // d.micro_batch_size, d.micro_batch_size, d.seq_len + 1)
        return Batch(inputs=seqs[..., :-1].contiguous(), labels=seqs[..., 1:].contiguous())

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.position = int(state["position"])
