"""bench: training throughput of tuneloop's trainer against a plain transformers Trainer + PEFT baseline.

    python -m tuneloop_trainer bench --config bench.json [--out bench-results.json]

    {"model": "tiny", "seq_len": 256, "steps": 3, "warmup_steps": 1}                      # CPU smoke run
    {"model": "llama3-8b", "methods": ["lora", "qlora"], "steps": 20, "warmup_steps": 3}    # the GPU figures

bench.json (unknown keys are refused; relative paths are taken from the file's own directory):
    model                   "tiny" | "llama3-8b" | a local model directory |
                            {"arch": "llama", "hidden_size": 4096, "intermediate_size": 14336,
                             "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
                             "vocab_size": 128256, ...any other config field}        (random weights, seeded)
    tokenizer               null | a tokenizer directory: only its pad token id is used (token ids are synthetic)
    seq_len                 2048    packing length, and the cap on a row's length
    methods                 ["lora", "qlora"]
    lora                    {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": [all attention + MLP projections]}
    learning_rate           2e-4    constant on both sides (the schedule does not change throughput)
    micro_batch_size        4       sequences per forward pass: packs for ours, rows for the baseline
    rows_per_step           null    rows per optimizer step, the same rows on both sides; null: micro_batch_size x
                                    floor(seq_len / expected row length), so ours fills about micro_batch_size packs
    steps, warmup_steps     20, 3   timed optimizer steps, after untimed ones (at least 1: its end starts the clock)
    dataset                 {"median_tokens": 350, "sigma": 0.8, "min_tokens": 32, "prompt_fraction": 0.4, "seed": 0}
                            row lengths ~ lognormal(ln median, sigma), clipped to [min_tokens, seq_len]; the first
                            prompt_fraction of each row is unlabeled (the prompt), the rest is labeled
    device, precision       "auto", "auto"    (bf16 on CUDA, fp32 on CPU)
    attn_implementation     "auto"  ours only (flash_attention_2 when installed, else sdpa); the baseline keeps
                            transformers' default
    gradient_checkpointing  "auto"  our rule (on above 1B parameters), applied to both sides alike
    matmul_size             null    side of the square matmul timed for the peak rate, bf16 (fp32 on CPU);
                                    null: 8192 on CUDA, 1024 on CPU
    matmul_repeats          10      timings of it; the best one is the peak
    seed                    0

What runs, per method (the same base weights from one directory, the same rows in the same order, the same number
of optimizer steps, the same LoRA shape, learning rate, gradient clipping and checkpointing):
  ours      the trainer's own pieces: model.load_base/prepare_base/attach_adapter, data.pack + train.collate_items
            (position ids restart per row, no attention across rows), train.make_optimizer (fused AdamW on CUDA) and
            train.optimizer_step (loss on labeled tokens only, bf16 autocast).
  baseline  transformers.Trainer over a PeftModel: rows unpacked, right-padded to the longest row of each micro-batch
            (data.collate_padded, i.e. what DataCollatorForSeq2Seq(padding="longest") produces; random-weight models
            have no tokenizer for transformers' own collators), micro_batch_size rows per forward and
            rows_per_step / micro_batch_size accumulation steps, the Trainer's default optimizer, a sequential
            sampler (so each step sees the rows ours sees).

Figures per run, over the timed steps (wall time between the ends of consecutive optimizer steps, after a device
synchronize, so data collation is inside on both sides):
  tokens_per_s     real (non-padding) tokens / seconds; both sides count the same rows the same way
  mfu              model FLOPs / seconds / the matmul rate measured in this same process (see FLOPS_FORMULA)
  peak_gpu_mem     torch.cuda.max_memory_allocated over the run, loading included (reset between runs; null on CPU)
and per method the ratio ours / baseline of tokens/s, and both sides' loss at step 1: with the same weights, the same
rows and a still no-op adapter it must agree but for dropout masks and rounding (exactly, with lora.dropout 0), which
shows that both trained on the same tokens and that packed rows did not see each other. QLoRA without CUDA or
without bitsandbytes is skipped with the reason in the results. A run that runs out of GPU memory is recorded as
such, not retried.

Stdout: `start`, one `progress` per finished run, `done` {"outputs": {"results": path}, "metrics": {...}}. A table
on stderr. The results file holds the machine (GPU, versions), the config, the matmul rate, the data and each run;
it is rewritten after every run ("complete": false until the last), so a session cut short keeps what finished.
Random-weight models are written once to a temporary directory (under $TMPDIR; 16 GB for llama3-8b) and removed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from .config import LoraSettings, _bad, _choice, _int, _number, read_config_file
from .protocol import BadInput, ErrorType, emit

log = logging.getLogger("tuneloop_trainer.bench")

METHODS = ("lora", "qlora")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")


# Architecture fields every spec must give, as positive integers; any other key goes to the config as is.
ARCH_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _tiny_preset() -> dict[str, Any]:
    from .tiny import ARCHITECTURE

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

FLOPS_FORMULA = (
    "model FLOPs of a row of n real tokens = n * (4 * P_frozen + 6 * P_lora) + 6 * L * d_attn * n * (n + 1). "
    "P_frozen: weights of the frozen linear layers (every attention and MLP projection, and lm_head; embeddings are "
    "lookups and count 0), at 2 FLOPs per weight per token forward plus 2 for the gradient of the activations and "
    "none for the frozen weights' own gradient. P_lora: the LoRA A and B weights, r * (in + out) per adapted layer, "
    "2 forward + 2 activation gradient + 2 weight gradient. Attention: per layer, causal Q.K^T and A.V over the "
    "row (query i meets i keys): forward 2 * 2 * d_attn * (1 + ... + n) = 2 * d_attn * n * (n + 1), backward "
    "twice that; d_attn = attention heads * head_dim, L = layers. Rows packed together do not attend to each other, "
    "so the term follows row lengths. Padding and activation recomputation (gradient checkpointing) count 0, and "
    "both sides are counted with this same formula on the same rows. "
    "MFU = FLOPs of the timed steps / their seconds / the matmul rate measured in the same process."
)


# ---------------------------------------------------------------------------------------------------- config


def _build(cls: type, data: Any, prefix: str) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise _bad(prefix.rstrip(".") or "config", f"expected an object, got {data!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise _bad(prefix + unknown[0], f"unknown key{'s' if len(unknown) > 1 else ''}: "
                                        f"{', '.join(prefix + k for k in unknown)}")  # fmt: skip
    return cls(**data)


# The adapter's shape, validated exactly as the trainer's config validates it.
LoraShape = LoraSettings


@dataclass
class SyntheticData:
    median_tokens: int = 350
    sigma: float = 0.8
    min_tokens: int = 32
    prompt_fraction: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        _int("dataset.median_tokens", self.median_tokens, low=2)
        _number("dataset.sigma", self.sigma, low=0, high=3)
        _int("dataset.min_tokens", self.min_tokens, low=2)
        _number("dataset.prompt_fraction", self.prompt_fraction, low=0, high=1, high_open=True)
        _int("dataset.seed", self.seed, low=0, high=2**32 - 1)

    def expected_length(self, seq_len: int) -> float:
        """Mean row length before clipping (lognormal: median * e^(sigma^2 / 2)), clipped to the allowed range."""
        return min(max(self.median_tokens * math.exp(self.sigma**2 / 2), self.min_tokens), seq_len)


@dataclass
class BenchConfig:
    model: str | dict = "tiny"
    tokenizer: str | None = None
    seq_len: int = 2048
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    lora: LoraShape = field(default_factory=LoraShape)
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
        self.lora = _build(LoraShape, self.lora, "lora.")
        self.dataset = _build(SyntheticData, self.dataset, "dataset.")
        self._check_model()
        if self.tokenizer is not None:
            if not isinstance(self.tokenizer, str) or not os.path.isdir(self.tokenizer):
                raise _bad("tokenizer", f"expected a tokenizer directory or null, got {self.tokenizer!r}")
        _int("seq_len", self.seq_len, low=16, high=1 << 20)
        methods = self.methods
        if not isinstance(methods, list) or not methods:
            raise _bad("methods", f"expected a non-empty list of {', '.join(METHODS)}, got {methods!r}")
        for i, method in enumerate(methods):
            _choice(f"methods[{i}]", method, METHODS)
        if len(set(methods)) != len(methods):
            raise _bad("methods", f"each method at most once, got {methods!r}")
        _number("learning_rate", self.learning_rate, low=0, high=1, low_open=True)
        _int("micro_batch_size", self.micro_batch_size, low=1, high=4096)
        if self.rows_per_step is not None:
            _int("rows_per_step", self.rows_per_step, low=1, high=1 << 20)
            if self.rows_per_step % self.micro_batch_size:
                raise _bad("rows_per_step", f"must be a multiple of micro_batch_size ({self.micro_batch_size}), "
                                            f"got {self.rows_per_step}")  # fmt: skip
        _int("steps", self.steps, low=1, high=100_000)
        _int("warmup_steps", self.warmup_steps, low=1, high=100_000)
        if self.dataset.min_tokens > self.seq_len:
            raise _bad("dataset.min_tokens", f"must be <= seq_len ({self.seq_len}), got {self.dataset.min_tokens}")
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("attn_implementation", self.attn_implementation, ATTENTION)
        _choice("gradient_checkpointing", self.gradient_checkpointing, ("auto", True, False))
        if self.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise _bad("attn_implementation", "flash_attention_2 needs the flash_attn package")
        if self.matmul_size is not None:
            _int("matmul_size", self.matmul_size, low=64, high=32768)
        _int("matmul_repeats", self.matmul_repeats, low=1, high=1000)
        _int("seed", self.seed, low=0, high=2**32 - 1)

    def _check_model(self) -> None:
        model = self.model
        if isinstance(model, str):
            if model in PRESETS:
                return
            if not os.path.isdir(model):
                raise _bad("model", f"expected a preset ({', '.join(PRESETS)}), an architecture object or a local "
                                    f"model directory; no such directory: {model}")  # fmt: skip
            if not os.path.isfile(os.path.join(model, "config.json")):
                raise BadInput(f"{model} has no config.json: not a model directory", type=ErrorType.MODEL_INVALID,
                               field="model")  # fmt: skip
            return
        if not isinstance(model, dict):
            raise _bad("model", f"expected a preset name, a directory or an architecture object, got {model!r}")
        arch = model.get("arch")
        if not isinstance(arch, str) or not arch.strip():
            raise _bad("model.arch", f"expected a transformers model type such as \"llama\", got {arch!r}")
        for name in ARCH_REQUIRED:
            if name not in model:
                raise _bad(f"model.{name}", "required key missing")
            _int(f"model.{name}", model[name], low=1)
        heads = model["num_attention_heads"]
        kv = model.get("num_key_value_heads", heads)
        _int("model.num_key_value_heads", kv, low=1)
        if heads % kv:
            raise _bad("model.num_key_value_heads", f"must divide num_attention_heads ({heads}), got {kv}")
        if "head_dim" in model:
            _int("model.head_dim", model["head_dim"], low=1)
        elif model["hidden_size"] % heads:
            raise _bad("model.num_attention_heads", f"must divide hidden_size ({model['hidden_size']}) unless "
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


def config_from_dict(data: Any, *, base_dir: str | None = None) -> BenchConfig:
    if not isinstance(data, dict):
        raise _bad("config", f"expected a JSON object at the top level, got {type(data).__name__}")
    data = dict(data)
    if base_dir is not None:
        for name in ("model", "tokenizer"):
            value = data.get(name)
            if isinstance(value, str) and value not in PRESETS and value.strip() and not os.path.isabs(value):
                data[name] = os.path.normpath(os.path.join(base_dir, value))
    return _build(BenchConfig, data, "")


def load_bench_config(path: str) -> BenchConfig:
    data, base_dir = read_config_file(path)
    return config_from_dict(data, base_dir=base_dir)


# ---------------------------------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="bench config, JSON (see the module docstring)")
    parser.add_argument("--out", default="bench-results.json", help="results file to write (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    cfg = load_bench_config(args.config)
    out = os.path.abspath(args.out)
    if not os.path.isdir(os.path.dirname(out)):
        raise BadInput(f"no such directory: {os.path.dirname(out)}", field="--out")
    if os.path.isdir(out):
        raise BadInput(f"{out} is a directory", field="--out")
    run(cfg, out)
    return 0


@dataclass
class Env:
    """What is decided once for all runs: where, in what precision, on which weights and rows."""

    cfg: BenchConfig
    device: str
    precision: str
    model_dir: str
    work_dir: str
    pad_id: int
    rows: list  # data.Example, rows_per_step per optimizer step, in step order
    rows_per_step: int

    def step_rows(self, step: int) -> list:
        """The rows of 0-based optimizer step `step`: the same on both sides."""
        return self.rows[step * self.rows_per_step : (step + 1) * self.rows_per_step]


def run(cfg: BenchConfig, out: str) -> dict:
    """Runs every planned method on both sides, writes `out`, emits the protocol lines; returns the results."""
    device, precision = resolve_device(cfg)
    skipped = skipped_methods(cfg, device, precision)
    methods = [m for m in cfg.methods if m not in skipped]
    spec = cfg.arch_spec()
    if spec is not None:
        from transformers import CONFIG_MAPPING

        if spec["arch"] not in CONFIG_MAPPING:
            raise _bad("model.arch", f"transformers knows no model type {spec['arch']!r}")
    total_runs = 2 * len(methods)
    emit("start", command="bench", step=0, total_steps=total_runs, resumed_from=None, device=device,
         precision=precision, methods=methods, skipped=skipped)  # fmt: skip
    matmul = measure_matmul(device, precision, cfg.matmul_size, cfg.matmul_repeats)
    log.info("matmul peak: %.1f TFLOP/s (%s %s, %d^3)", matmul["tflops"], matmul["device"], matmul["dtype"],
             matmul["size"])  # fmt: skip
    results: dict[str, Any] = {
        "complete": False,
        "machine": machine_info(device),
        "config": dataclasses.asdict(cfg),
        "resolved": {"device": device, "precision": precision, "architecture": spec},
        "matmul": matmul,
        "flops_formula": FLOPS_FORMULA,
        "data": None,
        "runs": [],
        "comparison": {},
        "skipped": [{"method": m, "reason": reason} for m, reason in skipped.items()],
    }
    if methods:  # nothing to load when every method was skipped
        work_dir = tempfile.mkdtemp(prefix="tuneloop-bench-")
        try:
            run_methods(cfg, spec, methods, device, precision, work_dir, matmul, results, out)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
    results["complete"] = True
    write_json_atomic(out, results)
    print_table(results)
    emit("done", outputs={"results": out}, metrics=headline(results))
    return results


def run_methods(cfg: BenchConfig, spec: dict | None, methods: list[str], device: str, precision: str, work_dir: str,
                matmul: dict, results: dict, out: str) -> None:  # fmt: skip
    """Builds the weights and the rows, then runs ours and the baseline per method, adding each run to `results`."""
    started = time.monotonic()
    if spec is not None:
        model_dir = os.path.join(work_dir, "model")
        build_random_model(spec, model_dir, seed=cfg.seed, device=device, precision=precision)
    else:
        model_dir = str(cfg.model)
    vocab, pad_id = vocabulary(cfg, model_dir)
    rows_per_step = cfg.resolved_rows_per_step
    rows = synthetic_rows(cfg, vocab, pad_id, cfg.total_steps * rows_per_step)
    env = Env(cfg, device, precision, model_dir, work_dir, pad_id, rows, rows_per_step)
    log.info("data: %d rows (%d per step), %d tokens; model ready in %.1fs", len(rows), rows_per_step,
             sum(len(r.input_ids) for r in rows), time.monotonic() - started)  # fmt: skip
    results["resolved"].update(model_dir=model_dir if spec is None else None, rows_per_step=rows_per_step,
                               pad_token_id=pad_id)  # fmt: skip
    results["data"] = data_summary(env)
    runs = results["runs"]
    for method in methods:
        for side in ("ours", "baseline"):
            figures = run_one(env, method, side, matmul)
            runs.append(figures)
            results["comparison"] = compare(runs, methods)
            # Rewritten after every run: a session cut off by its time limit still has the runs it finished.
            write_json_atomic(out, results)
            emit("progress", step=len(runs), total=2 * len(methods), epoch=None, loss=figures.get("last_loss"),
                 lr=cfg.learning_rate, tokens_per_s=figures.get("tokens_per_s"), gpu_mem=figures.get("peak_gpu_mem"),
                 eta_s=None, method=method, side=side, status=figures["status"],
                 step_time_s=figures.get("step_time_s", {}).get("mean"), mfu=figures.get("mfu"))  # fmt: skip


def resolve_device(cfg: BenchConfig) -> tuple[str, str]:
    """(device, precision) by the trainer's rules: CUDA when there is one, bf16 on it, fp32 on CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise _bad("device", "device is \"cuda\" but torch sees no CUDA device")
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and cuda) else "cpu"
    precision = cfg.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device == "cpu":
        raise _bad("precision", "bf16 is measured on CUDA only; use \"auto\" or \"fp32\" on CPU")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise _bad("precision", "this GPU has no bf16 support; use \"fp32\"")
    return device, precision


def skipped_methods(cfg: BenchConfig, device: str, precision: str) -> dict[str, str]:
    """Methods that cannot run here, with the reason (a result, not an error)."""
    skipped = {}
    if "qlora" in cfg.methods:
        if device != "cuda":
            skipped["qlora"] = "needs CUDA: bitsandbytes 4-bit runs on GPUs only"
        elif importlib.util.find_spec("bitsandbytes") is None:
            skipped["qlora"] = "bitsandbytes is not installed (pip install 'tuneloop-trainer[qlora]')"
        elif precision != "bf16":
            skipped["qlora"] = f"computes in bf16; precision here is {precision}"
    return skipped


# ---------------------------------------------------------------------------------------------------- inputs


def build_random_model(spec: dict, out_dir: str, *, seed: int, device: str, precision: str) -> None:
    """Writes a model of architecture `spec` with seeded random weights, so every run loads the same weights the
    same way (from_pretrained, 4-bit quantisation included)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kwargs = {k: v for k, v in spec.items() if k != "arch"}
    kwargs.setdefault("pad_token_id", 0)
    try:
        config = AutoConfig.for_model(spec["arch"], **kwargs)
    except (TypeError, ValueError) as err:
        raise _bad("model", f"cannot make a {spec['arch']} config from the given fields: {err}") from None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    started = time.monotonic()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):  # initialised where it will run: an 8B model in seconds, not minutes
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(out_dir)
    log.info("random %s model (%.2fB parameters) written in %.1fs", spec["arch"], model.num_parameters() / 1e9,
             time.monotonic() - started)  # fmt: skip
    del model
    free_memory(device)


def vocabulary(cfg: BenchConfig, model_dir: str) -> tuple[int, int]:
    """(vocabulary size, pad token id): the tokenizer's pad (or eos) when one is given or lies in the model
    directory, else the model config's pad token, else 0."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    vocab = int(text.vocab_size)
    pad = None
    tok_dir = cfg.tokenizer or (model_dir if os.path.isfile(os.path.join(model_dir, "tokenizer_config.json")) else None)
    if tok_dir is not None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        except (OSError, ValueError) as err:
            raise BadInput(f"cannot load a tokenizer from {tok_dir}: {err}", type=ErrorType.MODEL_INVALID,
                           field="tokenizer") from None  # fmt: skip
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        pad = getattr(text, "pad_token_id", None)
    if isinstance(pad, list):
        pad = pad[0]
    pad = int(pad) if pad is not None and 0 <= int(pad) < vocab else 0
    return vocab, pad


def synthetic_rows(cfg: BenchConfig, vocab: int, pad_id: int, n: int) -> list:
    """`n` seeded rows shaped like chat data: lognormal lengths, an unlabeled prompt, a labeled answer.

    Token ids are uniform over the vocabulary less the pad id. As data.encode does, a row's first token is never
    labeled, so no row's loss leans on the row packed before it."""
    import numpy as np

    from .data import IGNORE_INDEX, Example

    d = cfg.dataset
    rng = np.random.default_rng(d.seed)
    lengths = np.clip(np.rint(rng.lognormal(math.log(d.median_tokens), d.sigma, size=n)), d.min_tokens, cfg.seq_len)
    rows = []
    for length in lengths.astype(int).tolist():
        ids = rng.integers(0, vocab - 1, size=length)
        ids[ids >= pad_id] += 1
        prompt = min(max(1, round(d.prompt_fraction * length)), length - 1)
        ids = ids.tolist()
        rows.append(Example(input_ids=ids, labels=[IGNORE_INDEX] * prompt + ids[prompt:]))
    return rows


def data_summary(env: Env) -> dict:
    from .data import IGNORE_INDEX

    lengths = sorted(len(r.input_ids) for r in env.rows)
    labeled = sum(sum(1 for x in r.labels if x != IGNORE_INDEX) for r in env.rows)
    return {
        "rows": len(lengths),
        "rows_per_step": env.rows_per_step,
        "tokens": sum(lengths),
        "labeled_tokens": labeled,
        "length_median": statistics.median(lengths),
        "length_mean": round(statistics.fmean(lengths), 1),
        "length_p90": lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))],
        "length_max": lengths[-1],
        "rows_at_seq_len": sum(1 for n in lengths if n == env.cfg.seq_len),
    }


# ---------------------------------------------------------------------------------------------------- measuring


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def measure_matmul(device: str, precision: str, size: int | None, repeats: int) -> dict:
    """The peak matmul rate of this device in the precision the runs use: the best of `repeats` timings of a square
    matmul on random data (each timing 10 back-to-back products on CUDA, 1 on CPU, after warm-up)."""
    import torch

    size = size or (8192 if device == "cuda" else 1024)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    inner = 10 if device == "cuda" else 1
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    c = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(3 if device == "cuda" else 1):
        torch.matmul(a, b, out=c)
    synchronize(device)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=c)
        synchronize(device)
        rates.append(2 * size**3 * inner / (time.perf_counter() - started) / 1e12)
    del a, b, c
    free_memory(device)
    label = "measured bf16 matmul peak" if precision == "bf16" else f"measured fp32 matmul peak ({device})"
    return {
        "device": device,
        "dtype": "bf16" if precision == "bf16" else "fp32",
        "label": label,
        "size": size,
        "repeats": repeats,
        "products_per_timing": inner,
        "tflops": max(rates),
        "tflops_median": statistics.median(rates),
        "tflops_all": [round(r, 4) for r in rates],
    }


@dataclass
class StepRecord:
    tokens: int  # real tokens
    padded_tokens: int  # positions the model computed, padding included
    seconds: float | None  # None for warm-up steps
    loss: float | None


class StepClock:
    """Wall time between the ends of consecutive optimizer steps, after a device synchronize. The end of the last
    warm-up step starts the clock, so one-time costs (kernel selection, allocator growth) stay out."""

    def __init__(self, device: str, warmup_steps: int) -> None:
        self.device, self.warmup = device, warmup_steps
        self.last: float | None = None
        self.seconds: list[float] = []

    def step_end(self, step: int) -> float | None:
        """Call at the end of 1-based optimizer step `step`; returns its duration once the clock runs."""
        synchronize(self.device)
        now = time.perf_counter()
        duration = None
        if step > self.warmup and self.last is not None:
            duration = now - self.last
            self.seconds.append(duration)
        if step >= self.warmup:
            self.last = now
        return duration


def linear_weights(model: Any) -> tuple[int, int]:
    """(frozen linear weights, LoRA weights) of a PeftModel; 4-bit layers count their logical in x out."""
    import torch

    frozen = lora = 0
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):  # bitsandbytes' Linear4bit is one too
            continue
        n = module.in_features * module.out_features
        if ".lora_A." in name or ".lora_B." in name or name.endswith((".lora_A", ".lora_B")):
            lora += n
        else:
            frozen += n
    return frozen, lora


def attention_width(model: Any) -> tuple[int, int]:
    """(layers, attention heads x head_dim) of the model's text config."""
    config = model.config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return int(config.num_hidden_layers), heads * int(head_dim)


def row_flops(n: int, frozen: int, lora: int, layers: int, d_attn: int) -> int:
    """Model FLOPs of one training row of n real tokens (FLOPS_FORMULA)."""
    return n * (4 * frozen + 6 * lora) + 6 * layers * d_attn * n * (n + 1)


def run_one(env: Env, method: str, side: str, matmul: dict) -> dict:
    """One run with its figures; a run that exhausts GPU memory is recorded, the others go on."""
    import torch

    base = {"method": method, "side": side}
    free_memory(env.device)
    if env.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    log.info("run: %s %s", method, side)
    oom: str | None = None
    try:
        # Third-party code prints (the Trainer's log dicts, warnings): stdout belongs to the protocol.
        with contextlib.redirect_stdout(sys.stderr):
            raw = (run_ours if side == "ours" else run_baseline)(env, method)
    except torch.OutOfMemoryError as err:
        oom = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if oom is not None:  # outside the except block, so the traceback (and the model it holds) is gone
        free_memory(env.device)
        log.warning("%s %s ran out of GPU memory: %s", method, side, oom)
        return {**base, "status": "oom", "error": oom, "peak_gpu_mem": peak_memory(env.device)}
    figures = {**base, "status": "ok", **summarise(env, raw, matmul), "peak_gpu_mem": peak_memory(env.device)}
    if figures["peak_gpu_mem"] is not None:
        figures["peak_gpu_mem_gib"] = round(figures["peak_gpu_mem"] / 2**30, 2)
        figures["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    free_memory(env.device)
    return figures


def peak_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())


def summarise(env: Env, raw: dict, matmul: dict) -> dict:
    records: list[StepRecord] = raw.pop("records")
    cfg = env.cfg
    for step, record in enumerate(records):
        expected = sum(len(r.input_ids) for r in env.step_rows(step))
        if record.tokens != expected:  # both sides must have trained on exactly the planned rows
            raise RuntimeError(f"step {step + 1} saw {record.tokens} real tokens, {expected} were planned")
    timed = records[cfg.warmup_steps :]
    seconds = sum(r.seconds for r in timed if r.seconds is not None)
    tokens = sum(r.tokens for r in timed)
    padded = sum(r.padded_tokens for r in timed)
    layers, d_attn = raw["layers"], raw["d_attn"]
    flops = sum(
        row_flops(len(row.input_ids), raw["frozen_weights"], raw["lora_weights"], layers, d_attn)
        for step in range(cfg.warmup_steps, cfg.total_steps)
        for row in env.step_rows(step)
    )
    step_times = [r.seconds for r in timed if r.seconds is not None]
    achieved = flops / seconds if seconds > 0 else None
    return {
        **raw,
        "steps": len(timed),
        "warmup_steps": cfg.warmup_steps,
        "tokens": tokens,
        "padded_tokens": padded,
        "padding_fraction": round(1 - tokens / padded, 4) if padded else None,
        "seconds": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else None,
        "step_time_s": {
            "mean": round(statistics.fmean(step_times), 5),
            "median": round(statistics.median(step_times), 5),
            "min": round(min(step_times), 5),
            "max": round(max(step_times), 5),
        },
        "model_flops": flops,
        "model_flops_per_token": round(flops / tokens) if tokens else None,
        "achieved_tflops": round(achieved / 1e12, 4) if achieved else None,
        "mfu": round(achieved / (matmul["tflops"] * 1e12), 5) if achieved else None,
        "mfu_against": matmul["label"],
        "first_step_loss": records[0].loss,
        "last_loss": records[-1].loss,
    }


def model_facts(model: Any) -> dict:
    from .model import activation_checkpointing, count_parameters

    frozen, lora = linear_weights(model)
    layers, d_attn = attention_width(model)
    trainable, total = count_parameters(model)
    return {
        "frozen_weights": frozen,
        "lora_weights": lora,
        "layers": layers,
        "d_attn": d_attn,
        "trainable_params": trainable,
        "total_params": total,
        "gradient_checkpointing": activation_checkpointing(model),
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
    }


def train_config(env: Env, method: str) -> Any:
    """The TrainConfig our trainer would run with: the bench's settings, and a placeholder for the data file it
    never reads (the rows come from `env`)."""
    from .config import LoraSettings, TrainConfig

    cfg = env.cfg
    placeholder = os.path.join(env.work_dir, "rows.jsonl")
    if not os.path.exists(placeholder):
        open(placeholder, "w").close()
    return TrainConfig(
        base_model=env.model_dir,
        train_file=placeholder,
        output_dir=os.path.join(env.work_dir, "out"),
        method=method,
        lora=LoraSettings(**dataclasses.asdict(cfg.lora)),
        learning_rate=cfg.learning_rate,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        effective_batch_size=cfg.micro_batch_size,
        micro_batch_size=cfg.micro_batch_size,
        max_length=cfg.seq_len,
        packing=True,
        gradient_checkpointing=cfg.gradient_checkpointing,
        attn_implementation=cfg.attn_implementation,
        precision=env.precision,
        device=env.device,
        seed=cfg.seed,
    )


def run_ours(env: Env, method: str) -> dict:
    """Our trainer's step: packed rows, labeled-token loss, bf16 autocast, fused AdamW on CUDA."""
    from . import train
    from .data import count_tokens, pack
    from .model import attach_adapter, load_base, prepare_base, resolve_runtime

    cfg = env.cfg
    tcfg = train_config(env, method)
    runtime = resolve_runtime(tcfg)
    train.seed_everything(cfg.seed)
    started = time.monotonic()
    model = load_base(tcfg, runtime)
    prepare_base(model, tcfg)
    model = attach_adapter(model, tcfg)
    model.train()
    synchronize(env.device)
    load_s = time.monotonic() - started
    optimizer, scheduler = train.make_optimizer(model, tcfg, runtime, cfg.total_steps)
    flash = runtime.attn_implementation == "flash_attention_2"
    mbs = cfg.micro_batch_size
    clock = StepClock(env.device, cfg.warmup_steps)
    records, micro_batches = [], []
    for step in range(cfg.total_steps):
        rows = env.step_rows(step)
        packs = pack(rows, cfg.seq_len)
        batches = [train.collate_items(packs[i : i + mbs], env.pad_id, True, flash=flash)
                   for i in range(0, len(packs), mbs)]  # fmt: skip
        tokens = count_tokens(packs)  # what the packs hold, checked against the rows planned for the step
        padded = sum(int(b["input_ids"].numel()) for b in batches)
        result = train.optimizer_step(model, optimizer, scheduler, batches, tokens, runtime)
        seconds = clock.step_end(step + 1)
        records.append(StepRecord(result.tokens, padded, seconds, result.loss))
        micro_batches.append(len(batches))
    facts = model_facts(model)
    facts.update(
        load_seconds=round(load_s, 2),
        optimizer=f"torch.optim.AdamW(fused={runtime.device == 'cuda'})",
        micro_batches_per_step=round(statistics.fmean(micro_batches), 2),
        records=records,
    )
    del model, optimizer, scheduler
    return facts


class RecordingCollator:
    """data.collate_padded (right padding to the micro-batch's longest row, labels -100, attention_mask 0) that
    notes each batch's real and padded token counts, in the order the Trainer asks for batches."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id
        self.batches: list[tuple[int, int]] = []

    def __call__(self, features: list[dict]) -> dict:
        from .data import Example, collate_padded

        batch = collate_padded([Example(list(f["input_ids"]), list(f["labels"])) for f in features], self.pad_id)
        self.batches.append((int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())))
        return batch


def run_baseline(env: Env, method: str) -> dict:
    """A plain transformers Trainer + PEFT run: padded batches, no packing, the Trainer's defaults elsewhere."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    from .model import wants_checkpointing

    cfg = env.cfg
    tcfg = train_config(env, method)
    hf_logging.disable_progress_bar()
    torch.manual_seed(cfg.seed)
    started = time.monotonic()
    kwargs: dict[str, Any] = {"dtype": torch.bfloat16 if env.precision == "bf16" else torch.float32}
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(  # the usual QLoRA recipe, as ours loads it
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    if env.device == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(env.model_dir, **kwargs)
    model.config.use_cache = False
    checkpointing = wants_checkpointing(tcfg, model.num_parameters())  # our rule, so both sides do the same
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = cfg.lora
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`; the FutureWarning is theirs.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=lora.r, lora_alpha=lora.alpha,
                                                 lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
                                                 bias="none"))  # fmt: skip
    synchronize(env.device)
    load_s = time.monotonic() - started

    mbs, rows_per_step = cfg.micro_batch_size, env.rows_per_step
    rows = env.rows[: cfg.total_steps * rows_per_step]
    dataset = [{"input_ids": r.input_ids, "labels": r.labels} for r in rows]
    collator = RecordingCollator(env.pad_id)
    clock = StepClock(env.device, cfg.warmup_steps)
    losses: dict[int, float] = {}

    class Timing(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            clock.step_end(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses[state.global_step] = float(logs["loss"])

    args = TrainingArguments(
        output_dir=os.path.join(env.work_dir, "trainer"),
        per_device_train_batch_size=mbs,
        gradient_accumulation_steps=rows_per_step // mbs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="constant",
        max_steps=cfg.total_steps,
        bf16=env.precision == "bf16",
        use_cpu=env.device == "cpu",
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        train_sampling_strategy="sequential",  # step k sees the rows ours sees at step k
        logging_strategy="steps",
        logging_steps=1,  # each step's loss, for the same-tokens cross-check
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        label_names=["labels"],
        remove_unused_columns=False,
        seed=cfg.seed,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[Timing()])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    facts = model_facts(trainer.model)

    ga = rows_per_step // mbs
    if len(collator.batches) != cfg.total_steps * ga:
        raise RuntimeError(f"the Trainer drew {len(collator.batches)} micro-batches, {cfg.total_steps * ga} planned")
    records = []
    timed = iter(clock.seconds)
    for step in range(cfg.total_steps):
        batches = collator.batches[step * ga : (step + 1) * ga]
        records.append(StepRecord(
            tokens=sum(real for real, _ in batches),
            padded_tokens=sum(padded for _, padded in batches),
            seconds=next(timed) if step >= cfg.warmup_steps else None,
            loss=losses.get(step + 1),
        ))  # fmt: skip
    facts.update(
        load_seconds=round(load_s, 2),
        optimizer=str(getattr(args.optim, "value", args.optim)),
        micro_batches_per_step=ga,
        records=records,
    )
    trainer.accelerator.free_memory()
    del trainer, model
    return facts


# ---------------------------------------------------------------------------------------------------- reporting


def compare(runs: list[dict], methods: list[str]) -> dict:
    out = {}
    for method in methods:
        ours = next((r for r in runs if r["method"] == method and r["side"] == "ours"), None)
        base = next((r for r in runs if r["method"] == method and r["side"] == "baseline"), None)
        if ours is None or base is None:
            continue
        row: dict[str, Any] = {"tokens_per_s_ratio": None, "step_time_ratio": None, "peak_gpu_mem_ratio": None}
        if ours["status"] == base["status"] == "ok":
            row["tokens_per_s_ratio"] = round(ours["tokens_per_s"] / base["tokens_per_s"], 4)
            row["step_time_ratio"] = round(ours["step_time_s"]["mean"] / base["step_time_s"]["mean"], 4)
            a, b = ours["first_step_loss"], base["first_step_loss"]
            if a is not None and b is not None and math.isfinite(a) and math.isfinite(b):
                # Same weights, same rows, the adapter still a no-op at step 1: the two losses agree but for
                # dropout masks and rounding. A gap means the sides did not train on the same tokens.
                row["first_step_loss"] = {"ours": a, "baseline": b, "relative_difference": round(abs(a - b) / b, 6)}
        if ours.get("peak_gpu_mem") and base.get("peak_gpu_mem"):
            row["peak_gpu_mem_ratio"] = round(ours["peak_gpu_mem"] / base["peak_gpu_mem"], 4)
        row["status"] = {"ours": ours["status"], "baseline": base["status"]}
        out[method] = row
    return out


def headline(results: dict) -> dict:
    metrics: dict[str, Any] = {"matmul_tflops": round(results["matmul"]["tflops"], 3)}
    for run in results["runs"]:
        key = f"{run['method']}_{run['side']}"
        metrics[f"{key}_tokens_per_s"] = run.get("tokens_per_s")
        metrics[f"{key}_mfu"] = run.get("mfu")
        metrics[f"{key}_peak_gpu_mem"] = run.get("peak_gpu_mem")
    for method, row in results["comparison"].items():
        metrics[f"{method}_tokens_per_s_ratio"] = row["tokens_per_s_ratio"]
    for skip in results["skipped"]:
        metrics[f"{skip['method']}_skipped"] = skip["reason"]
    return metrics


def print_table(results: dict) -> None:
    matmul = results["matmul"]
    lines = [
        f"{matmul['label']}: {matmul['tflops']:.2f} TFLOP/s ({matmul['size']}^3, best of {matmul['repeats']})",
        f"{'method':<7} {'side':<9} {'tok/s':>11} {'step s':>9} {'TFLOP/s':>9} {'MFU':>7} {'peak GiB':>9} "
        f"{'pad %':>6} {'loss@1':>8}",
    ]

    def cell(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for run in results["runs"]:
        if run["status"] != "ok":
            lines.append(f"{run['method']:<7} {run['side']:<9} {run['status']}: {run.get('error', '')}")
            continue
        lines.append(
            f"{run['method']:<7} {run['side']:<9} {cell(run['tokens_per_s'], '11.1f')} "
            f"{cell(run['step_time_s']['mean'], '9.4f')} {cell(run['achieved_tflops'], '9.3f')} "
            f"{cell(run['mfu'] and 100 * run['mfu'], '6.2f')}% {cell(run.get('peak_gpu_mem_gib'), '9.2f')} "
            f"{cell(100 * run['padding_fraction'], '6.1f')} {cell(run['first_step_loss'], '8.4f')}"
        )
    for method, row in results["comparison"].items():
        lines.append(f"{method}: ours / baseline tokens/s = {cell(row['tokens_per_s_ratio'], '.3f')}")
    for skip in results["skipped"]:
        lines.append(f"{skip['method']}: skipped: {skip['reason']}")
    for line in lines:
        log.info("%s", line)


def machine_info(device: str) -> dict:
    import importlib.metadata as md

    import torch

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "peft": version("peft"),
        "accelerate": version("accelerate"),
        "bitsandbytes": version("bitsandbytes"),
        "flash_attn": version("flash-attn") or version("flash_attn"),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        info.update(
            gpu=props.name,
            gpu_count=torch.cuda.device_count(),
            gpu_memory_gib=round(props.total_memory / 2**30, 2),
            gpu_multiprocessors=props.multi_processor_count,
            gpu_capability=f"{props.major}.{props.minor}",
        )
    else:
        info["gpu"] = None
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_json_atomic(path: str, obj: dict) -> None:
    from .protocol import _clean

    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
