"""The bench command's configuration (bench.json; the fields are listed in the package docstring).

    from tuneloop_trainer.bench.config import BenchConfig
    from tuneloop_trainer.config import load_config
    cfg = load_config(BenchConfig, "bench/train/cpu-small.json")     # read as every command's config is
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import METHODS, LoraSettings, build, path_field
from ..runtime import ATTENTION, DEVICES, PRECISIONS
from ..validate import bad, check_choice, check_int, check_number, check_string

# Architecture fields every spec must give, as positive integers; any other key goes to the config as is.
ARCH_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _tiny_preset() -> dict[str, Any]:
    from ..init_tiny import ARCHITECTURE

    return {"arch": "llama", **ARCHITECTURE, "vocab_size": 2048}  # the shape init-tiny writes, default vocabulary


PRESETS = {
    "tiny": _tiny_preset,
    "llama3-8b": lambda: {
        "arch": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
    },
}


@dataclass
class SyntheticData:
    median_tokens: int = 350
    sigma: float = 0.8
    min_tokens: int = 32
    prompt_fraction: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("dataset.median_tokens", self.median_tokens, low=2)
        check_number("dataset.sigma", self.sigma, low=0, high=3)
        check_int("dataset.min_tokens", self.min_tokens, low=2)
        check_number("dataset.prompt_fraction", self.prompt_fraction, low=0, high=1, high_open=True)
        check_int("dataset.seed", self.seed, low=0, high=2**32 - 1)

    def expected_length(self, seq_len: int) -> float:
        """Mean row length before clipping (lognormal: median * e^(sigma^2 / 2)), clipped to the allowed range."""
        return min(max(self.median_tokens * math.exp(self.sigma**2 / 2), self.min_tokens), seq_len)


@dataclass
class BenchConfig:
    model: str | dict = path_field("model", "tiny", keep=tuple(PRESETS))  # a preset, a directory or an architecture
    tokenizer: str | None = path_field("dir", None)
    seq_len: int = 2048
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    lora: LoraSettings = field(default_factory=LoraSettings)
    learning_rate: float = 2e-4
    micro_batch_size: int = 4
    rows_per_step: int | None = None
    steps: int = 20
    warmup_steps: int = 3
    dataset: SyntheticData = field(default_factory=SyntheticData)
    device: str = "auto"
    precision: str = "auto"
    attn_implementation: str = "auto"
    gradient_checkpointing: str | bool = "auto"
    matmul_size: int | None = None
    matmul_repeats: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        self.lora = build(LoraSettings, self.lora, "lora.")
        self.dataset = build(SyntheticData, self.dataset, "dataset.")
        self._check_model()
        check_string("tokenizer", self.tokenizer, optional=True)
        check_int("seq_len", self.seq_len, low=16, high=1 << 20)
        methods = self.methods
        if not isinstance(methods, list) or not methods:
            raise bad("methods", f"expected a non-empty list of {', '.join(METHODS)}, got {methods!r}")
        for i, method in enumerate(methods):
            check_choice(f"methods[{i}]", method, METHODS)
        if len(set(methods)) != len(methods):
            raise bad("methods", f"each method at most once, got {methods!r}")
        check_number("learning_rate", self.learning_rate, low=0, high=1, low_open=True)
        check_int("micro_batch_size", self.micro_batch_size, low=1, high=4096)
        if self.rows_per_step is not None:
            check_int("rows_per_step", self.rows_per_step, low=1, high=1 << 20)
            if self.rows_per_step % self.micro_batch_size:
                raise bad("rows_per_step", f"must be a multiple of micro_batch_size ({self.micro_batch_size}), "
                                            f"got {self.rows_per_step}")  # fmt: skip
        check_int("steps", self.steps, low=1, high=100_000)
        check_int("warmup_steps", self.warmup_steps, low=1, high=100_000)
        if self.dataset.min_tokens > self.seq_len:
            raise bad("dataset.min_tokens", f"must be <= seq_len ({self.seq_len}), got {self.dataset.min_tokens}")
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("attn_implementation", self.attn_implementation, ATTENTION)
        check_choice("gradient_checkpointing", self.gradient_checkpointing, ("auto", True, False))
        if self.matmul_size is not None:
            check_int("matmul_size", self.matmul_size, low=64, high=32768)
        check_int("matmul_repeats", self.matmul_repeats, low=1, high=1000)
        check_int("seed", self.seed, low=0, high=2**32 - 1)

    def _check_model(self) -> None:
        model = self.model
        if isinstance(model, str):
            check_string("model", model)  # a preset, or a model directory: checked where the config is loaded
            return
        if not isinstance(model, dict):
            raise bad("model", f"expected a preset name, a directory or an architecture object, got {model!r}")
        arch = model.get("arch")
        if not isinstance(arch, str) or not arch.strip():
            raise bad("model.arch", f"expected a transformers model type such as \"llama\", got {arch!r}")
        for name in ARCH_REQUIRED:
            if name not in model:
                raise bad(f"model.{name}", "required key missing")
            check_int(f"model.{name}", model[name], low=1)
        heads = model["num_attention_heads"]
        kv = model.get("num_key_value_heads", heads)
        check_int("model.num_key_value_heads", kv, low=1)
        if heads % kv:
            raise bad("model.num_key_value_heads", f"must divide num_attention_heads ({heads}), got {kv}")
        if "head_dim" in model:
            check_int("model.head_dim", model["head_dim"], low=1)
        elif model["hidden_size"] % heads:
            raise bad("model.num_attention_heads", f"must divide hidden_size ({model['hidden_size']}) unless "
                                                    f"head_dim is given, got {heads}")  # fmt: skip

    @property
    def resolved_rows_per_step(self) -> int:
        if self.rows_per_step is not None:
            return self.rows_per_step
        fill = max(1, math.floor(self.seq_len / self.dataset.expected_length(self.seq_len)))
        return self.micro_batch_size * fill

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps

    def arch_spec(self) -> dict | None:
        """The architecture to build with random weights; None for a local model directory."""
        if isinstance(self.model, dict):
            return dict(self.model)
        if self.model in PRESETS:
            return PRESETS[self.model]()
        return None
