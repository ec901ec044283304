"""Packed data: all file formats, deterministic dp sharding, exact resume position."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from reftrain.config import PACKAGE_ROOT, ConfigError, load_config
from reftrain.data import PackedLoader, read_documents

CONFIG = PACKAGE_ROOT / "examples" / "tiny_qwen3_moe.toml"


def test_reads_txt_jsonl_parquet(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\nsecond doc\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "third"}) + "\n")
    pq.write_table(pa.table({"text": ["fourth", "fifth"]}), tmp_path / "c.parquet")
    docs = read_documents([tmp_path / "a.txt", tmp_path / "b.jsonl", tmp_path / "c.parquet"])
    assert docs == ["first doc", "second doc", "third", "fourth", "fifth"]


def test_jsonl_without_text_field_is_named(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"b.jsonl:1: a .jsonl line needs a \"text\" field"):
        read_documents([tmp_path / "b.jsonl"])


def test_data_ranks_split_the_global_batch_and_resume_exactly():
    cfg = load_config(CONFIG, ["--data.seq_len=32", "--data.global_batch_size=4", "--data.micro_batch_size=1"])
    whole = PackedLoader(cfg, 512, 0, 1)
    halves = [PackedLoader(cfg, 512, r, 2) for r in range(2)]
    for _ in range(2):
        full = whole.next_batch().inputs.flatten(0, 1)
        parts = torch.cat([h.next_batch().inputs.flatten(0, 1) for h in halves])
        assert torch.equal(full, parts)
    resumed = PackedLoader(cfg, 512, 0, 1)
    resumed.load_state_dict(whole.state_dict())
    assert torch.equal(resumed.next_batch().labels, whole.next_batch().labels)
    assert int(full.max()) < 512


def test_labels_are_inputs_shifted_by_one():
    cfg = load_config(CONFIG, ["--data.seq_len=32"])
    batch = PackedLoader(cfg, 512).next_batch()
    assert torch.equal(batch.inputs[..., 1:], batch.labels[..., :-1])
