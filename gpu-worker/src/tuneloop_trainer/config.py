"""Training configuration: one JSON file, validated before torch is imported.

    from tuneloop_trainer.config import load_train_config
    cfg = load_train_config("run/train.json")      # BadInput(field="lora.r", ...) on the first bad field

A minimal file (every other field has a default, see TrainConfig):

    {"base_model": "/models/tiny", "train_file": "train.jsonl", "output_dir": "out"}

Relative paths in the file are resolved against the file's own directory, so a run directory can be moved whole.
Unknown keys are errors: a misspelt field must not silently fall back to its default.

Fields (default):
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
  attn_implementation     "auto" (flash_attention_2 if installed, on CUDA in bf16; else sdpa) | "sdpa" | "eager" |
                          "flash_attention_2"
  precision               "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp32"
  device                  "auto" | "cpu" | "cuda"
  seed                    0
  checkpoint_every_steps  50 (0: off);  checkpoint_every_minutes 10 (0: off);  keep_checkpoints 3
  log_every_steps         1;  eval_at_end true;  run_id null (echoed in every event)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from .protocol import BadInput, ErrorType

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
METHODS = ("lora", "qlora")
SCHEDULERS = ("cosine", "linear", "constant")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
PATH_FIELDS = ("base_model", "train_file", "validation_file", "output_dir", "init_adapter", "replay_file")


def _bad(field_name: str, message: str, type: str = ErrorType.CONFIG_INVALID) -> BadInput:
    return BadInput(message, type=type, field=field_name)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and value == value  # not NaN


def _int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    expected = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
    if not _is_int(value) or value < low or (high is not None and value > high):
        raise _bad(name, f"expected {expected}, got {value!r}")


def _number(name: str, value: Any, *, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    expected = f"a number in {lo}{low}, {high}{hi}"
    ok = _is_number(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise _bad(name, f"expected {expected}, got {value!r}")


def _choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    # `type(...) is` keeps true from matching 1 and "1" from matching 1.
    if not any(type(value) is type(c) and value == c for c in choices):
        got = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        raise _bad(name, f"expected one of {', '.join(json.dumps(c) for c in choices)}, got {got}")


def _string(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, f"expected a non-empty string{' or null' if optional else ''}, got {value!r}")


def _existing_file(name: str, path: str | None) -> None:
    if path is not None and not os.path.isfile(path):
        raise _bad(name, f"no such file: {path}")


@dataclass
class LoraSettings:
    """The adapter's shape. Ignored when `init_adapter` is set: the existing adapter keeps its own shape."""

    r: int = 16
    alpha: float = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGET_MODULES))

    def __post_init__(self) -> None:
        _int("lora.r", self.r, low=1, high=4096)
        _number("lora.alpha", self.alpha, low=0, high=1e6, low_open=True)
        _number("lora.dropout", self.dropout, low=0, high=1, high_open=True)
        modules = self.target_modules
        if not isinstance(modules, list) or not modules or not all(isinstance(m, str) and m.strip() for m in modules):
            raise _bad("lora.target_modules", f"expected a non-empty list of module names, got {modules!r}")


@dataclass
class TrainConfig:
    base_model: str
    train_file: str
    output_dir: str
    validation_file: str | None = None
    method: str = "lora"
    lora: LoraSettings = field(default_factory=LoraSettings)
    init_adapter: str | None = None
    replay_file: str | None = None
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
    device: str = "auto"
    run_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = _build(LoraSettings, self.lora, prefix="lora.")
        elif not isinstance(self.lora, LoraSettings):
            raise _bad("lora", f"expected an object, got {self.lora!r}")
        self._check_paths()
        self._check_choices()
        self._check_numbers()
        self._check_batches()

    def _check_paths(self) -> None:
        for name in ("base_model", "train_file", "output_dir"):
            _string(name, getattr(self, name))
        for name in ("validation_file", "init_adapter", "replay_file", "run_id"):
            _string(name, getattr(self, name), optional=True)
        if self.run_id is not None and len(self.run_id) > 200:
            raise _bad("run_id", f"expected at most 200 characters, got {len(self.run_id)}")
        if not os.path.isdir(self.base_model):
            # A hub id would need the Hugging Face hub, which tuneloop does not reach yet: the worker gets local dirs.
            raise _bad("base_model", f"no such directory: {self.base_model} (a local model directory is expected)")
        if not os.path.isfile(os.path.join(self.base_model, "config.json")):
            message = f"{self.base_model} has no config.json: not a model directory"
            raise _bad("base_model", message, ErrorType.MODEL_INVALID)
        _existing_file("train_file", self.train_file)
        _existing_file("validation_file", self.validation_file)
        _existing_file("replay_file", self.replay_file)
        if self.init_adapter is not None and not os.path.isfile(os.path.join(self.init_adapter, "adapter_config.json")):
            raise _bad("init_adapter", f"{self.init_adapter} has no adapter_config.json: not a PEFT adapter directory")
        if os.path.exists(self.output_dir) and not os.path.isdir(self.output_dir):
            raise _bad("output_dir", f"{self.output_dir} exists and is not a directory")

    def _check_choices(self) -> None:
        _choice("method", self.method, METHODS)
        _choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        _choice("gradient_checkpointing", self.gradient_checkpointing, ("auto", True, False))
        _choice("attn_implementation", self.attn_implementation, ATTENTION)
        _choice("precision", self.precision, PRECISIONS)
        _choice("device", self.device, DEVICES)
        for name in ("packing", "eval_at_end"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(name, f"expected true or false, got {getattr(self, name)!r}")
        if self.method == "qlora" and self.device == "cpu":
            raise _bad("method", "qlora needs CUDA (bitsandbytes 4-bit); device is \"cpu\"")
        if self.method == "qlora" and self.precision == "fp32":
            raise _bad("precision", "qlora computes in bf16; use \"auto\" or \"bf16\"")

    def _check_numbers(self) -> None:
        _number("learning_rate", self.learning_rate, low=0, high=1, low_open=True)
        _number("warmup_ratio", self.warmup_ratio, low=0, high=1, high_open=True)
        _number("replay_fraction", self.replay_fraction, low=0, high=1)
        _int("epochs", self.epochs, low=1, high=1000)
        _int("max_length", self.max_length, low=8, high=1 << 20)
        _int("seed", self.seed, low=0, high=2**63 - 1)
        if self.max_steps is not None:
            _int("max_steps", self.max_steps, low=1)
        _int("checkpoint_every_steps", self.checkpoint_every_steps, low=0)
        _number("checkpoint_every_minutes", self.checkpoint_every_minutes, low=0, high=7 * 24 * 60)
        _int("keep_checkpoints", self.keep_checkpoints, low=1)
        _int("log_every_steps", self.log_every_steps, low=1)

    def _check_batches(self) -> None:
        _int("effective_batch_size", self.effective_batch_size, low=1)
        _int("micro_batch_size", self.micro_batch_size, low=1)
        if self.effective_batch_size % self.micro_batch_size:
            raise _bad(
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


def _build(cls: type, data: dict[str, Any], *, prefix: str = "") -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        listed = ", ".join(prefix + k for k in unknown)
        raise _bad(prefix + unknown[0], f"unknown key{'s' if len(unknown) > 1 else ''}: {listed}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data and _required(f)]
    if missing:
        raise _bad(prefix + missing[0], f"required key missing: {', '.join(prefix + m for m in missing)}")
    return cls(**data)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def config_from_dict(data: Any, *, base_dir: str | None = None) -> TrainConfig:
    """Builds a TrainConfig from parsed JSON; relative paths are taken relative to `base_dir` when given."""
    if not isinstance(data, dict):
        raise _bad("config", f"expected a JSON object at the top level, got {type(data).__name__}")
    data = dict(data)
    if base_dir is not None:
        for name in PATH_FIELDS:
            value = data.get(name)
            if isinstance(value, str) and value.strip() and not os.path.isabs(value):
                data[name] = os.path.normpath(os.path.join(base_dir, value))
    return _build(TrainConfig, data)


def read_config_file(path: str) -> tuple[Any, str]:
    """A config file's JSON and the folder its relative paths are relative to; a clear BadInput otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise _bad("config", f"cannot read config file {path}: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad("config", f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    return data, os.path.dirname(os.path.abspath(path))


def load_train_config(path: str) -> TrainConfig:
    data, base_dir = read_config_file(path)
    return config_from_dict(data, base_dir=base_dir)
