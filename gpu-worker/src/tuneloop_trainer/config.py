"""Configuration: the one way every command reads its --config, and the training config itself.

    from tuneloop_trainer.config import TrainConfig, load_config
    cfg = load_config(TrainConfig, "run/train.json")      # BadInput(field="lora.r", ...) on the first bad field

How a config file is read (train, evaluate, parity and bench alike; see load_config):
  1. the file must hold a JSON object; unknown keys are errors (a misspelt field must not silently fall back to its
     default) and so are missing required ones; nested objects (lora, dataset) are read the same way;
  2. the dataclass's `__post_init__` checks each field's shape (validate.check_*): types, ranges, choices, and
     fields that depend on each other;
  3. relative paths (the fields declared with path_field) are taken relative to the config file's own directory,
     so a run directory can be moved whole;
  4. then, and only then, the paths are checked on disk (validate.PATH_CHECKS: file, dir, model, adapter,
     output_dir, output_file). Files are read, and their contents checked, by the command that reads them.
A config built in code (TrainConfig(...)) gets step 2 only.

A minimal training file (every other field has a default, see TrainConfig):

    {"base_model": "/models/tiny", "train_file": "train.jsonl", "output_dir": "out"}

Training fields (default):
  base_model              local model directory (required; must hold config.json; hub ids are not fetched)
  train_file              JSONL of {"messages": [...]} rows (required)
  output_dir              gets checkpoints/ and adapter/ (required)
  validation_file         rows for the held-out loss at the end (null)
  method                  "lora" | "qlora" ("lora"); qlora needs CUDA and bitsandbytes
  lora                    {"r": 16, "alpha": 32, "dropout": 0.05,
                           "target_modules": ["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"]}
  init_adapter            adapter directory to continue training (the production adapter; null: a fresh one)
  replay_file             earlier rows to mix in (null); replay_fraction (0.2) x train rows are sampled with seed
  learning_rate           2e-4;  lr_scheduler "cosine" | "linear" | "constant" ("cosine"), all after warmup_ratio 0.03
  epochs                  3;  max_steps caps the optimizer steps (null)
  effective_batch_size    16 sequences per optimizer step; micro_batch_size 4 per forward pass (must divide it)
  max_length              2048 tokens per sequence;  packing true
  gradient_checkpointing  "auto" (on above ~1B parameters) | true | false
  attn_implementation     "auto" | "sdpa" | "eager" | "flash_attention_2"   (see runtime.py)
  precision               "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp32"   (see runtime.py)
  device                  "auto" | "cpu" | "cuda"
  seed                    0
  checkpoint_every_steps  50 (0: off);  checkpoint_every_minutes 10 (0: off);  keep_checkpoints 3
  log_every_steps         1;  eval_at_end true;  run_id null (echoed in every event)
  eval_every_steps        0 (off): the held-out loss every N steps too, for the validation curve (not at the end)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .runtime import ATTENTION, DEVICES, PRECISIONS
from .validate import (
    PATH_CHECKS,
    bad,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_string,
    check_strings,
)

T = TypeVar("T")

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
METHODS = ("lora", "qlora")
SCHEDULERS = ("cosine", "linear", "constant")


# ---------------------------------------------------------------------------------------------------- loading


def path_field(kind: str, default: Any = dataclasses.MISSING, *, keep: tuple[str, ...] = (), each: bool = False) -> Any:
    """A dataclass field holding a path (or, with each=True, a mapping of names to paths): relative to the config
    file when loaded, then checked with validate.PATH_CHECKS[kind]. Values in `keep` (presets) are not paths;
    null, and values that are not strings (an inline object), are neither resolved nor checked."""
    if kind not in PATH_CHECKS:
        raise ValueError(kind)
    return field(default=default, metadata={"path": kind, "keep": keep, "each": each})


def read_config_file(path: str) -> tuple[Any, str]:
    """A config file's JSON and the folder its relative paths are relative to; a clear BadInput otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise bad("config", f"cannot read config file {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise bad("config", f"{path} is not UTF-8: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise bad("config", f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    return data, os.path.dirname(os.path.abspath(path))


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """`cls(**data)` for a JSON object with only cls's fields and all its required ones (shape checks run in
    cls's __post_init__); `prefix` names a nested object ("lora.") in the errors."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        if not prefix:
            raise bad("config", f"expected a JSON object at the top level, got {type(data).__name__}")
        raise bad(prefix.rstrip("."), f"expected an object, got {data!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - {f.name for f in fields})
    if unknown:
        listed = ", ".join(prefix + k for k in unknown)
        raise bad(prefix + unknown[0], f"unknown key{'s' if len(unknown) > 1 else ''}: {listed}")
    missing = [f.name for f in fields if f.name not in data and _required(f)]
    if missing:
        raise bad(prefix + missing[0], f"required key missing: {', '.join(prefix + m for m in missing)}")
    return cls(**data)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def config_from_dict(cls: type[T], data: Any, *, base_dir: str | None = None) -> T:
    """A `cls` config from parsed JSON: built and shape-checked, its relative paths taken from `base_dir` (when
    given), then its paths checked on disk."""
    cfg = build(cls, data)
    for f in dataclasses.fields(cfg):
        kind = f.metadata.get("path")
        if kind is None:
            continue
        value = getattr(cfg, f.name)
        if f.metadata["each"] and isinstance(value, dict):
            resolved = {k: _resolve(v, base_dir, f.metadata["keep"]) for k, v in value.items()}
            for key, path in resolved.items():
                _check_path(kind, f"{f.name}.{key}", path, f.metadata["keep"])
        else:
            resolved = _resolve(value, base_dir, f.metadata["keep"])
            _check_path(kind, f.name, resolved, f.metadata["keep"])
        setattr(cfg, f.name, resolved)
    return cfg


def _resolve(value: Any, base_dir: str | None, keep: tuple[str, ...]) -> Any:
    if base_dir is None or not isinstance(value, str) or value in keep or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base_dir, value))


def _check_path(kind: str, name: str, value: Any, keep: tuple[str, ...]) -> None:
    if isinstance(value, str) and value not in keep:
        PATH_CHECKS[kind](name, value)


def load_config(cls: type[T], path: str) -> T:
    """Reads a command's --config file as a `cls` (see the module docstring for the steps)."""
    data, base_dir = read_config_file(path)
    return config_from_dict(cls, data, base_dir=base_dir)


# ---------------------------------------------------------------------------------------------------- training


@dataclass
class LoraSettings:
    """The adapter's shape. Ignored when `init_adapter` is set: the existing adapter keeps its own shape."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def __post_init__(self) -> None:
        check_int("lora.r", self.r, low=1, high=4096)
        check_number("lora.alpha", self.alpha, low=0, high=1e6, low_open=True)
        check_number("lora.dropout", self.dropout, low=0, high=1, high_open=True)
        check_strings("lora.target_modules", self.target_modules, non_empty=True)


@dataclass
class TrainConfig:
    base_model: str = path_field("model")
    train_file: str = path_field("file")
    output_dir: str = path_field("output_dir")
    validation_file: str | None = path_field("file", None)
    method: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    init_adapter: str | None = path_field("adapter", None)
    replay_file: str | None = path_field("file", None)
    replay_fraction: float = 0.2
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: int = 3
    effective_batch_size: int = 16
    micro_batch_size: int = 4
    max_length: int = 2048
    packing: bool = True
    gradient_checkpointing: str | bool = "auto"
    attn_implementation: str = "auto"
    precision: str = "auto"
    seed: int = 0
    max_steps: int | None = None
    checkpoint_every_steps: int = 50
    checkpoint_every_minutes: float = 10
    keep_checkpoints: int = 3
    log_every_steps: int = 1
    eval_at_end: bool = True
    eval_every_steps: int = 0
    device: str = "auto"
    run_id: str | None = None

    def __post_init__(self) -> None:
        self.lora = build(LoraSettings, self.lora, "lora.")
        self._check_strings()
        self._check_choices()
        self._check_numbers()
        self._check_batches()

    def _check_strings(self) -> None:
        for name in ("base_model", "train_file", "output_dir"):
            check_string(name, getattr(self, name))
        for name in ("validation_file", "init_adapter", "replay_file", "run_id"):
            check_string(name, getattr(self, name), optional=True)
        if self.run_id is not None and len(self.run_id) > 200:
            raise bad("run_id", f"expected at most 200 characters, got {len(self.run_id)}")

    def _check_choices(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        check_choice("gradient_checkpointing", self.gradient_checkpointing, ("auto", True, False))
        check_choice("attn_implementation", self.attn_implementation, ATTENTION)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, DEVICES)
        check_bool("packing", self.packing)
        check_bool("eval_at_end", self.eval_at_end)
        if self.method == "qlora" and self.device == "cpu":
            raise bad("method", "qlora needs CUDA (bitsandbytes 4-bit); device is \"cpu\"")
        if self.method == "qlora" and self.precision == "fp32":
            raise bad("precision", "qlora computes in bf16; use \"auto\" or \"bf16\"")

    def _check_numbers(self) -> None:
        check_number("learning_rate", self.learning_rate, low=0, high=1, low_open=True)
        check_number("warmup_ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        check_number("replay_fraction", self.replay_fraction, low=0, high=1)
        check_int("epochs", self.epochs, low=1, high=1000)
        check_int("max_length", self.max_length, low=8, high=1 << 20)
        check_int("seed", self.seed, low=0, high=2**63 - 1)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, low=1)
        check_int("checkpoint_every_steps", self.checkpoint_every_steps, low=0)
        check_number("checkpoint_every_minutes", self.checkpoint_every_minutes, low=0, high=7 * 24 * 60)
        check_int("keep_checkpoints", self.keep_checkpoints, low=1)
        check_int("log_every_steps", self.log_every_steps, low=1)
        check_int("eval_every_steps", self.eval_every_steps, low=0)

    def _check_batches(self) -> None:
        check_int("effective_batch_size", self.effective_batch_size, low=1)
        check_int("micro_batch_size", self.micro_batch_size, low=1)
        if self.effective_batch_size % self.micro_batch_size:
            raise bad(
                "micro_batch_size",
                f"must divide effective_batch_size ({self.effective_batch_size}); got {self.micro_batch_size}",
            )

    @property
    def grad_accumulation(self) -> int:
        return self.effective_batch_size // self.micro_batch_size

    @property
    def adapter_dir(self) -> str:
        return os.path.join(self.output_dir, "adapter")

    @property
    def checkpoint_root(self) -> str:
        return os.path.join(self.output_dir, "checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run that wrote the checkpoint.

        Paths, intervals and the device are left out: a resume may run on another host, in another directory, with
        other checkpoint timing, and still continue the same optimisation exactly.
        """
        keep = (
            "method", "init_adapter", "replay_fraction", "learning_rate", "lr_scheduler", "warmup_ratio", "epochs",
            "effective_batch_size", "micro_batch_size", "max_length", "packing", "seed", "max_steps",
        )  # fmt: skip
        out = {name: getattr(self, name) for name in keep}
        out["init_adapter"] = self.init_adapter is not None
        out["lora"] = dataclasses.asdict(self.lora)
        return out


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
