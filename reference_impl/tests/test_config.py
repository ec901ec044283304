"""Config loading: CLI overrides apply, and every invalid setting fails with its one clear message."""

import subprocess
import sys

import pytest

from reftrain.config import PACKAGE_ROOT, ConfigError, load_config, validate

CONFIG = PACKAGE_ROOT / "examples" / "tiny_qwen3_moe.toml"


def test_example_loads_with_its_values():
    cfg = load_config(CONFIG)
    assert cfg.model_config_path() == PACKAGE_ROOT / "examples" / "models" / "qwen3_moe_tiny.json"
    assert cfg.data.source == "corpus" and cfg.training.betas == (0.9, 0.95)


def test_cli_overrides_both_spellings_and_nested_model_overrides():
    cfg = load_config(
        CONFIG,
        [
            "--training.steps=20",
            "--parallel.ep",
            "2",
            "--training.betas=0.8,0.9",
            "--model.overrides.num_hidden_layers=2",
            "--training.compile=true",
            "--data.paths=a.txt,b.jsonl",
            "--training.log_interval=5",
        ],
    )
    assert cfg.training.steps == 20 and cfg.parallel.ep == 2 and cfg.training.betas == (0.8, 0.9)
    assert cfg.training.compile is True and cfg.data.paths == ["a.txt", "b.jsonl"]
    assert cfg.training.log_interval == 5
    assert cfg.hf_config_dict()["num_hidden_layers"] == 2


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--trainig.steps=3"], "unknown section [trainig]"),
        (["--training.stepz=3"], "unknown key 'stepz' in [training]"),
        (["--training.steps=many"], "[training] steps = 'many' is not a valid int"),
        (["--training.lr=true"], "[training] lr = True must be a number"),
        (["--training.betas=0.9"], "must be a list of 2 values"),
        (["--parallel.pp_schedule=zigzag"], "parallel.pp_schedule = 'zigzag' is not one of 1F1B, GPipe"),
        (["--parallel.dp=0"], "parallel.dp = 0 must be >= 1"),
        (["--training.log_interval=0"], "training.log_interval = 0 must be >= 1"),
        pytest.param(  # an explicit id: pytest versions name a value over 100 characters differently
            ["--log_interval=5"],
            "--log_interval: log_interval is no longer a top-level key, it is training.log_interval; "
            "use --training.log_interval=5",
            id="overrides8-top-level log_interval",
        ),
        (["--data.source=files"], "needs data.paths"),
        (["--training.min_lr=1.0"], "exceeds training.lr"),
        (["--checkpoint.resume=true"], "checkpoint.resume = true needs checkpoint.dir"),
        (["--training.steps"], "needs a value"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIG, overrides)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "overrides, world_size, message",
    [
        (["--parallel.ep=2"], 4, "pp * dp * ep = 1*1*2 = 2 but the world size is 4"),
        (
            ["--parallel.ep=3", "--data.global_batch_size=12", "--data.micro_batch_size=1"],
            3,
            "8 experts, not divisible by parallel.ep = 3",
        ),
        (
            ["--parallel.pp=4", "--data.global_batch_size=16", "--data.micro_batch_size=1"],
            4,
            "parallel.pp = 4 exceeds the model's 3 layers",
        ),
        (
            ["--parallel.dp=2", "--data.global_batch_size=6", "--data.micro_batch_size=2"],
            2,
            "global_batch_size = 6 is not divisible by dp * ep * micro_batch_size = 2*1*2 = 4",
        ),
        (
            ["--parallel.pp=2", "--data.global_batch_size=4", "--data.micro_batch_size=4"],
            2,
            "1F1B with pp = 2 needs at least 2 micro-batches",
        ),
        (["--model.config=models/nope.json"], 1, "does not exist"),
        (["--model.overrides.vocab_size=100"], 1, "too small for a byte-level tokenizer"),
    ],
)
def test_invalid_layouts_rejected_up_front(overrides, world_size, message):
    cfg = load_config(CONFIG, overrides)
    with pytest.raises(ConfigError) as e:
        validate(cfg, world_size)
    assert message in str(e.value)
    assert str(CONFIG) in str(e.value)


def test_valid_layout_passes():
    validate(load_config(CONFIG, ["--parallel.pp=2", "--parallel.ep=2"]), 4)


def test_bad_toml_key_in_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nstep = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown key 'step' in \[training\]; valid keys: steps"):
        load_config(bad)


def test_old_top_level_log_interval_in_file_names_its_new_place(tmp_path):
    old = tmp_path / "old.toml"
    old.write_text(CONFIG.read_text().replace("[model]", "log_interval = 7\n\n[model]", 1))
    with pytest.raises(ConfigError) as e:
        load_config(old)
    assert str(e.value) == (
        f"{old}: log_interval is no longer a top-level key, it is training.log_interval; "
        "move `log_interval = 7` under [training]"
    )


def test_cli_prints_one_error_line_and_exits_2():
    proc = subprocess.run(
        [sys.executable, "-m", "reftrain.train", str(CONFIG), "--parallel.ep=3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE_ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {CONFIG}: parallel.pp * dp * ep = 1*1*3 = 3 but the world size is 1; "
        "launch 3 processes or change pp/dp/ep"
    ]


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_more_processes_than_gpus_on_a_node_is_one_clear_error(device, monkeypatch):
    """torchrun with 2 processes on a 1-GPU host: the second would die in CUDA with "invalid device ordinal"."""
    import torch

    from reftrain.train import device_type

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = load_config(CONFIG, [f"--training.device={device}"])
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert device_type(cfg) == "cuda"
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ConfigError) as e:
        device_type(cfg)
    assert str(e.value) == (
        f"{CONFIG}: training.device = '{device}' runs each process on a GPU of its own, but local rank 1 has none "
        "(1 visible); launch at most 1 process(es) per node, or use training.device = 'cpu'"
    )
    assert device_type(load_config(CONFIG, ["--training.device=cpu"])) == "cpu"
