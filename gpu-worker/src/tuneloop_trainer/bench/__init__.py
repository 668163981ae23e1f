"""bench: training throughput of tuneloop's trainer against a plain transformers Trainer + PEFT baseline.

    python -m tuneloop_trainer bench --config bench.json [--out bench-results.json]
    bash bench/train.sh [cpu-small | gpu-llama3-8b]          # the checked-in configs, results in bench/results/

    {"model": "tiny", "seq_len": 256, "steps": 3, "warmup_steps": 1}                      # CPU smoke run
    {"model": "llama3-8b", "methods": ["lora", "qlora"], "steps": 20, "warmup_steps": 3}    # the GPU figures

bench.json (read as every command's config is, see config.py: unknown keys are refused, relative paths are taken
from the file's own directory):
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
    device, precision       "auto", "auto"    (bf16 on CUDA, fp32 on CPU; see runtime.py)
    attn_implementation     "auto"  ours only (flash_attention_2 when installed, on CUDA in bf16, else sdpa); the
                            baseline keeps transformers' default
    gradient_checkpointing  "auto"  our rule (on above 1B parameters), applied to both sides alike
    matmul_size             null    side of the square matmul timed for the peak rate, bf16 (fp32 on CPU);
                                    null: 8192 on CUDA, 1024 on CPU
    matmul_repeats          10      timings of it; the best one is the peak
    seed                    0

What runs, per method (the same base weights from one directory, the same rows in the same order, the same number
of optimizer steps, the same LoRA shape, learning rate, gradient clipping and checkpointing):
  ours      the trainer's own training loop, engine.run_steps, as train runs it: model.load_model, each step's rows
            packed by data.pack (position ids restart per row, no attention across rows) into micro-batches of
            micro_batch_size packs, engine.make_optimizer (fused AdamW on CUDA) and engine.optimizer_step (loss on
            labeled tokens only, bf16 autocast). Only the data plan, checkpoints and progress lines are train's own.
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

The package: config.py (bench.json), inputs.py (weights and rows), sides.py (ours and the baseline), measure.py (the
clock, the matmul peak, FLOPs), report.py (ratios, table, results file); this module runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from ..protocol import emit
from ..runtime import free_memory, peak_gpu_memory, resolve_runtime
from ..validate import bad, check_output_file
from .config import BenchConfig
from .inputs import Env, build_random_model, data_summary, synthetic_rows, vocabulary
from .measure import FLOPS_FORMULA, measure_matmul, summarise
from .report import compare, headline, machine_info, print_table, write_json_atomic
from .sides import run_baseline, run_ours

log = logging.getLogger("tuneloop_trainer.bench")


CONFIG = BenchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="bench-results.json", help="results file to write (default: %(default)s)")


def main(args: argparse.Namespace, cfg: BenchConfig) -> int:
    out = os.path.abspath(args.out)
    check_output_file("--out", out)
    run(cfg, out)
    return 0


def run(cfg: BenchConfig, out: str) -> dict:
    """Runs every planned method on both sides, writes `out`, emits the protocol lines; returns the results."""
    runtime = resolve_runtime(cfg)  # the trainer's rules (runtime.py); bad settings fail before `start`
    device, precision = runtime.device, runtime.precision
    skipped = skipped_methods(cfg, device, precision)
    methods = [m for m in cfg.methods if m not in skipped]
    spec = cfg.arch_spec()
    if spec is not None:
        from transformers import CONFIG_MAPPING

        if spec["arch"] not in CONFIG_MAPPING:
            raise bad("model.arch", f"transformers knows no model type {spec['arch']!r}")
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
        return {**base, "status": "oom", "error": oom, "peak_gpu_mem": peak_gpu_memory(env.device)}
    figures = {**base, "status": "ok", **summarise(env, raw, matmul), "peak_gpu_mem": peak_gpu_memory(env.device)}
    if figures["peak_gpu_mem"] is not None:
        figures["peak_gpu_mem_gib"] = round(figures["peak_gpu_mem"] / 2**30, 2)
        figures["peak_gpu_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
    free_memory(env.device)
    return figures
