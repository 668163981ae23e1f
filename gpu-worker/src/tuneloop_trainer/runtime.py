"""Where and in what precision a command computes: the one resolver of device, precision and attention.

    from tuneloop_trainer.runtime import resolve_runtime
    runtime = resolve_runtime(cfg)      # any config with device and precision (train, evaluate, parity, bench)
    runtime.device, runtime.precision, runtime.dtype, runtime.autocast, runtime.attn_implementation

The vocabulary, the same in every command's config:
  device     "auto" (cuda when torch sees one, else cpu) | "cpu" | "cuda"
  precision  "auto" (bf16 on a CUDA device that supports it, else fp32) | "bf16" | "fp32"; bf16 runs on CUDA only
  attn_implementation (training only; commands without it keep transformers' default)
             "auto" (flash_attention_2 when the flash_attn package is installed and we run bf16 on CUDA, else
             sdpa) | "sdpa" | "eager" | "flash_attention_2"
and a config with `method: "qlora"` needs CUDA. Anything that cannot be had here is a BadInput naming the field.
"""

from __future__ import annotations

import gc
import importlib.util
from dataclasses import dataclass
from typing import Any, Protocol

from .validate import bad

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "bf16", "fp32")
ATTENTION = ("auto", "sdpa", "eager", "flash_attention_2")


class RuntimeSettings(Protocol):
    """What resolve_runtime reads of a config; `method` and `attn_implementation` are optional attributes."""

    device: str
    precision: str


@dataclass(frozen=True)
class Runtime:
    device: str  # "cpu" | "cuda"
    precision: str  # "bf16" | "fp32"
    attn_implementation: str | None  # None: transformers' default

    @property
    def autocast(self) -> bool:
        return self.device == "cuda" and self.precision == "bf16"

    @property
    def dtype(self) -> Any:
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32


def resolve_runtime(settings: RuntimeSettings) -> Runtime:
    import torch

    cuda = torch.cuda.is_available()
    if settings.device == "cuda" and not cuda:
        raise bad("device", "device is \"cuda\" but torch sees no CUDA device")
    if getattr(settings, "method", "lora") == "qlora" and not cuda:
        raise bad("method", "qlora needs CUDA (bitsandbytes 4-bit)")
    device = "cuda" if settings.device == "cuda" or (settings.device == "auto" and cuda) else "cpu"
    precision = settings.precision
    if precision == "auto":
        precision = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device == "cpu":
        raise bad("precision", "bf16 runs on CUDA only; use \"auto\" or \"fp32\" on CPU")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise bad("precision", "this GPU has no bf16 support; use precision \"fp32\"")
    attention = getattr(settings, "attn_implementation", None)
    return Runtime(device=device, precision=precision, attn_implementation=_attention(attention, device, precision))


def _attention(asked: str | None, device: str, precision: str) -> str | None:
    flash = importlib.util.find_spec("flash_attn") is not None
    if asked == "auto":
        return "flash_attention_2" if device == "cuda" and precision == "bf16" and flash else "sdpa"
    if asked == "flash_attention_2" and not flash:
        raise bad("attn_implementation", "flash_attention_2 needs the flash_attn package")
    return asked


def synchronize(device: str) -> None:
    """Waits for the device's queued work, so that a wall-clock reading covers it."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def peak_gpu_memory(device: str) -> int | None:
    """torch.cuda.max_memory_allocated; None off CUDA."""
    if device != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())
