"""DCP checkpoints: exact resume, resharding across layouts, and initialisation from an HF checkpoint."""

import shutil
from pathlib import Path

import pytest

from reftrain.config import PACKAGE_ROOT
from reftrain.testing import run_distributed, train_records

CONFIG = str(PACKAGE_ROOT / "examples" / "tiny_qwen3_moe.toml")
SMALL = [
    "--training.steps=4",
    "--training.warmup_steps=1",
    "--data.seq_len=32",
    "--data.global_batch_size=4",
    "--data.micro_batch_size=1",
    "--training.log_interval=100",
]


def losses(records):
    return [r["loss"] for r in records]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """4 steps with ep = 2 on 2 ranks, checkpointing every 2 steps."""
    ckpt = tmp_path_factory.mktemp("ckpt")
    records = run_distributed(
        train_records, 2, CONFIG, SMALL + ["--parallel.ep=2", f"--checkpoint.dir={ckpt}", "--checkpoint.interval=2"]
    )[0]
    return ckpt, losses(records)


def resume_from_step2(ckpt: Path, tmp_path: Path, world_size: int, layout: list[str]) -> list[float]:
    only_step2 = tmp_path / "resume"
    shutil.copytree(ckpt / "step_2", only_step2 / "step_2")
    records = run_distributed(
        train_records,
        world_size,
        CONFIG,
        SMALL + layout + [f"--checkpoint.dir={only_step2}", "--checkpoint.resume=true"],
    )[0]
    assert [r["step"] for r in records] == [3, 4]
    return losses(records)


def test_saves_every_interval(uninterrupted):
    ckpt, _ = uninterrupted
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_2", "step_4"]
    assert (ckpt / "step_2" / ".metadata").is_file()


def test_resume_continues_exactly(uninterrupted, tmp_path):
    ckpt, full = uninterrupted
    resumed = resume_from_step2(ckpt, tmp_path, 2, ["--parallel.ep=2"])
    assert resumed == pytest.approx(full[2:], rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(
    "world_size, layout",
    [(1, []), (2, ["--parallel.dp=2"]), (2, ["--parallel.pp=2"])],
    ids=["ep2-to-single", "ep2-to-dp2", "ep2-to-pp2"],
)
def test_reshard_to_another_layout(uninterrupted, tmp_path, world_size, layout):
    ckpt, full = uninterrupted
    resumed = resume_from_step2(ckpt, tmp_path, world_size, layout)
    assert resumed == pytest.approx(full[2:], rel=1e-4, abs=1e-4)


def export_seeded_model(directory: str, seed: int) -> None:
    from reftrain.config import load_config
    from reftrain.hf_checkpoint import export_hf_checkpoint
    from reftrain.models import build_model

    hf = load_config(CONFIG).hf_config_dict()
    model = build_model(hf, device="cpu")
    model.init_weights(seed)
    export_hf_checkpoint(model, directory, hf)


def test_init_from_hf_checkpoint(tmp_path):
    export_seeded_model(str(tmp_path / "hf"), seed=7)
    seeded = losses(run_distributed(train_records, 1, CONFIG, SMALL + ["--training.seed=7"])[0])
    from_hf = losses(
        run_distributed(
            train_records,
            2,
            CONFIG,
            SMALL + ["--training.seed=7", "--parallel.ep=2", f"--checkpoint.init_from_hf={tmp_path / 'hf'}"],
        )[0]
    )
    assert from_hf == pytest.approx(seeded, rel=1e-4, abs=1e-4)
    other_seed = losses(run_distributed(train_records, 1, CONFIG, SMALL + ["--training.seed=3"])[0])
    assert other_seed[0] != pytest.approx(seeded[0], rel=1e-4)
