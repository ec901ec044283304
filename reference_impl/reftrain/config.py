"""Typed run configuration: a TOML file under examples/ plus `--section.key=value` overrides.

Why dataclasses and one validation pass: a run that would fail after minutes of model building (a
mesh that does not divide the world, experts that do not divide over ep) fails here instead, with one
message that names the file, the field and the fix.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # reference_impl/


class ConfigError(ValueError):
    """A configuration mistake; the message says where it is and how to fix it."""


@dataclass
class ModelConfig:
    config: str = "models/qwen3_moe_tiny.json"
    """Hugging Face config.json, relative to the TOML file (or absolute)."""
    overrides: dict = field(default_factory=dict)
    """Fields replaced in the HF config, e.g. {num_hidden_layers = 2}."""


@dataclass
class ParallelConfig:
    pp: int = 1
    """Pipeline stages (outermost mesh dim)."""
    dp: int = 1
    """FSDP2 data-parallel degree; expert weights are sharded over dp only."""
    ep: int = 1
    """Expert-parallel degree (innermost); ep ranks also split the batch, so data ranks = dp * ep."""
    pp_schedule: str = "1F1B"
    """Pipeline schedule: 1F1B or GPipe."""


@dataclass
class TrainingConfig:
    steps: int = 100
    log_interval: int = 1
    """Print a step line every N steps (and at the last step)."""
    lr: float = 3e-3
    min_lr: float = 3e-4
    """Learning rate reached at the last step by cosine decay."""
    warmup_steps: int = 10
    weight_decay: float = 0.1
    """Applied to matrices only (parameters with 2+ dims)."""
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    """Max global gradient norm (over every rank); 0 disables clipping."""
    seed: int = 0
    aux_loss_coef: float = 0.001
    """Weight of the load-balancing loss averaged over MoE layers and micro-batches."""
    activation_checkpointing: bool = False
    compile: bool = False
    """torch.compile each decoder layer (GPU only)."""
    dtype: str = "auto"
    """auto (bfloat16 autocast on GPU, float32 on CPU), float32 or bfloat16."""
    device: str = "auto"
    """auto (cuda if available), cuda or cpu; a cuda run needs a GPU for each process of the node."""


@dataclass
class DataConfig:
    source: str = "corpus"
    """corpus (bundled text in data/), files (paths below) or synthetic (random tokens)."""
    paths: list[str] = field(default_factory=list)
    """.txt, .jsonl ("text" field) or .parquet ("text" column) files for source = files."""
    tokenizer: str = ""
    """A HF tokenizers JSON file; empty = byte-level BPE trained on the bundled corpus (cached)."""
    seq_len: int = 128
    global_batch_size: int = 8
    """Sequences per optimizer step, over all data ranks and micro-batches."""
    micro_batch_size: int = 2
    """Sequences per micro-batch on one data rank."""


@dataclass
class CheckpointConfig:
    dir: str = ""
    """Where DCP checkpoints go (step_N/ subfolders); empty disables saving."""
    interval: int = 0
    """Save every N steps (and at the end); 0 saves only at the end."""
    resume: bool = False
    """Continue from the newest step_N in dir."""
    init_from_hf: str = ""
    """A Hugging Face checkpoint dir (safetensors) to initialise weights from."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    source: str = "<defaults>"
    """The TOML file this came from (for error messages)."""

    @property
    def data_ranks(self) -> int:
        return self.parallel.dp * self.parallel.ep

    @property
    def num_microbatches(self) -> int:
        """Micro-batches per data rank per step (derived, so batch settings cannot contradict)."""
        return self.data.global_batch_size // (self.data_ranks * self.data.micro_batch_size)

    def model_config_path(self) -> Path:
        path = Path(self.model.config)
        if path.is_absolute():
            return path
        base = Path(self.source).parent if self.source != "<defaults>" else PACKAGE_ROOT / "examples"
        return (base / path).resolve()

    def hf_config_dict(self) -> dict:
        """The HF config.json with the overrides applied."""
        path = self.model_config_path()
        if not path.is_file():
            raise ConfigError(
                f"{self.source}: [model] config = {self.model.config!r}: {path} does not exist; "
                f"point it at a config.json (see examples/models/)"
            )
        hf = json.loads(path.read_text())
        hf.update(self.model.overrides)
        return hf

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config) if f.name != "source"}
MOVED = {"log_interval": "training"}
"""Former top-level keys -> the section that holds them now (an old config gets one error naming the fix)."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, where: str):
    """Convert a TOML value (or a CLI string) to the field's type, or raise one clear error."""
    origin = typing.get_origin(tp)
    from_cli = isinstance(value, str) and tp is not str
    if from_cli:
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            if origin in (list, tuple):
                value = [v.strip() for v in value.split(",") if v.strip()]
            elif origin is not dict:
                raise ConfigError(f"{where} = {value!r} is not a valid {_type_name(tp)}") from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r} must be true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} = {value!r} must be an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} = {value!r} must be a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} = {value!r} must be a string (quote it)")
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where} = {value!r} must be a list")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, where) for v in value]
    if origin is tuple:
        items = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise ConfigError(f"{where} = {value!r} must be a list of {len(items)} values, e.g. [0.9, 0.95]")
        return tuple(_coerce(v, t, where) for v, t in zip(value, items))
    if tp is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{where} = {value!r} must be a table")
    raise ConfigError(f"{where}: unsupported field type {tp}")


def _set(cfg: Config, section: str, key: str, value, source: str):
    if section in MOVED and key is None:
        new = MOVED[section]
        fix = (
            f"use --{new}.{section}={value}" if source.startswith("--") else f"move `{section} = {value}` under [{new}]"
        )
        raise ConfigError(f"{source}: {section} is no longer a top-level key, it is {new}.{section}; {fix}")
    if section not in SECTIONS:
        raise ConfigError(f"{source}: unknown section [{section}]; valid sections: {', '.join(SECTIONS)}")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if key is None:
        raise ConfigError(f"{source}: [{section}] must be a table of keys, e.g. --{section}.<key>=<value>")
    head, _, rest = key.partition(".")
    if head not in hints:
        raise ConfigError(f"{source}: unknown key {head!r} in [{section}]; valid keys: {', '.join(hints)}")
    where = f"{source}: [{section}] {key}"
    if rest:
        if hints[head] is not dict:
            raise ConfigError(f"{where}: {head} is not a table")
        getattr(obj, head)[rest] = _literal(value)
        return
    setattr(obj, head, _coerce(value, hints[head], where))


def _literal(value):
    """A dict override from the CLI: TOML literal if it parses (1.5, true), else the raw string."""
    if not isinstance(value, str):
        return value
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """`--section.key=value` and `--section.key value` -> [(dotted key, raw value)]."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise ConfigError(f"command line: unexpected argument {arg!r}; overrides look like --training.steps=20")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: {arg} needs a value, e.g. {arg}=VALUE")
            key, value = arg[2:], args[i + 1]
            i += 2
        pairs.append((key, value))
    return pairs


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a TOML config and apply command-line overrides (unknown keys and bad values raise ConfigError)."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(
                f"config file {path} does not exist; pass a TOML file such as examples/tiny_qwen3_moe.toml"
            )
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML ({e}); fix the syntax") from None
        cfg.source = str(path.resolve())
        for section, body in table.items():
            if isinstance(body, dict):
                for key, value in body.items():
                    if key == "overrides" and isinstance(value, dict) and section == "model":
                        cfg.model.overrides.update(value)
                    else:
                        _set(cfg, section, key, value, str(path))
            else:
                _set(cfg, section, None, body, str(path))
    for dotted, value in parse_overrides(overrides or []):
        section, _, key = dotted.partition(".")
        _set(cfg, section, key or None, value, f"--{dotted}")
    check_values(cfg)
    return cfg


def check_values(cfg: Config) -> None:
    """Checks that need no world size or model."""
    src = cfg.source
    positive = {
        "parallel.pp": cfg.parallel.pp,
        "parallel.dp": cfg.parallel.dp,
        "parallel.ep": cfg.parallel.ep,
        "training.steps": cfg.training.steps,
        "data.seq_len": cfg.data.seq_len,
        "data.global_batch_size": cfg.data.global_batch_size,
        "data.micro_batch_size": cfg.data.micro_batch_size,
        "training.log_interval": cfg.training.log_interval,
    }
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{src}: {name} = {value} must be >= 1")
    choices = {
        "parallel.pp_schedule": (cfg.parallel.pp_schedule, ("1F1B", "GPipe")),
        "training.dtype": (cfg.training.dtype, ("auto", "float32", "bfloat16")),
        "training.device": (cfg.training.device, ("auto", "cuda", "cpu")),
        "data.source": (cfg.data.source, ("corpus", "files", "synthetic")),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{src}: {name} = {value!r} is not one of {', '.join(allowed)}")
    if cfg.data.source == "files" and not cfg.data.paths:
        raise ConfigError(f"{src}: data.source = 'files' needs data.paths = ['a.txt', ...] (.txt, .jsonl or .parquet)")
    if cfg.training.min_lr > cfg.training.lr:
        raise ConfigError(
            f"{src}: training.min_lr = {cfg.training.min_lr} exceeds training.lr = {cfg.training.lr}; lower min_lr"
        )
    if cfg.checkpoint.resume and not cfg.checkpoint.dir:
        raise ConfigError(f"{src}: checkpoint.resume = true needs checkpoint.dir")


NUM_EXPERTS_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


def validate(cfg: Config, world_size: int) -> None:
    """Checks against the launch (world size) and the model's config; one message per mistake."""
    src, p = cfg.source, cfg.parallel
    if p.pp * p.dp * p.ep != world_size:
        raise ConfigError(
            f"{src}: parallel.pp * dp * ep = {p.pp}*{p.dp}*{p.ep} = {p.pp * p.dp * p.ep} but the world "
            f"size is {world_size}; launch {p.pp * p.dp * p.ep} processes or change pp/dp/ep"
        )
    hf = cfg.hf_config_dict()
    num_experts = next((hf[k] for k in NUM_EXPERTS_KEYS if k in hf), None)
    if num_experts is None:
        raise ConfigError(
            f"{src}: {cfg.model_config_path()} has none of {', '.join(NUM_EXPERTS_KEYS)}; an MoE config is required"
        )
    if num_experts % p.ep:
        raise ConfigError(
            f"{src}: the model has {num_experts} experts, not divisible by parallel.ep = {p.ep}; "
            f"choose ep dividing {num_experts}"
        )
    layers = hf.get("num_hidden_layers", 0)
    if layers < p.pp:
        raise ConfigError(
            f"{src}: parallel.pp = {p.pp} exceeds the model's {layers} layers "
            f"(num_hidden_layers); lower pp or add layers"
        )
    unit = cfg.data_ranks * cfg.data.micro_batch_size
    if cfg.data.global_batch_size % unit:
        raise ConfigError(
            f"{src}: data.global_batch_size = {cfg.data.global_batch_size} is not divisible by "
            f"dp * ep * micro_batch_size = {p.dp}*{p.ep}*{cfg.data.micro_batch_size} = {unit}; "
            f"use a multiple of {unit}"
        )
    if p.pp > 1 and cfg.num_microbatches < p.pp:
        raise ConfigError(
            f"{src}: {p.pp_schedule} with pp = {p.pp} needs at least {p.pp} micro-batches per data rank, "
            f"got global_batch_size / (dp*ep*micro_batch_size) = {cfg.num_microbatches}; "
            f"raise global_batch_size or lower micro_batch_size"
        )
    vocab = hf.get("vocab_size")
    if cfg.data.source != "synthetic" and vocab is not None and vocab < 256:
        raise ConfigError(
            f"{src}: vocab_size = {vocab} is too small for a byte-level tokenizer (>= 256); "
            f"raise it in [model.overrides] or use data.source = 'synthetic'"
        )


def cli(argv: list[str] | None = None) -> Config:
    """`CONFIG.toml [--section.key=value ...]` -> Config; prints the one error and exits on mistakes."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("--"):
        raise ConfigError(
            "usage: CONFIG.toml [--section.key=value ...], e.g. examples/tiny_qwen3_moe.toml --training.steps=20"
        )
    return load_config(argv[0], argv[1:])
