"""What bench measures and how it counts: the device's matmul peak, the step clock, model FLOPs (FLOPS_FORMULA) and
each run's figures.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from ..runtime import free_memory, synchronize
from .inputs import Env

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


def model_facts(model: Any) -> dict:
    from ..model import activation_checkpointing, count_parameters

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
