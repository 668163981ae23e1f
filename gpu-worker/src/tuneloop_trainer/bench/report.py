"""Comparing the runs: the ratios ours / baseline, the headline metrics of `done`, the table on stderr, and the
results file with the machine it ran on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
from typing import Any

from ..protocol import clean

log = logging.getLogger("tuneloop_trainer.bench")


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
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(clean(obj), f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
