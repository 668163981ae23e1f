"""train: supervised LoRA/QLoRA fine-tuning on chat rows, with atomic checkpoints and exact resume.

    python -m tuneloop_trainer train --config run/train.json
    python -m tuneloop_trainer train --config run/train.json --resume out/checkpoints/step-00000150
    python -m tuneloop_trainer train --config run/train.json --watch-stdin    # stdin EOF counts as SIGTERM

Rows ({"messages": [...]}, one per line) are tokenised with the base's chat template, loss only on assistant
turns, packed into max_length sequences (rows never attend to each other) and shuffled per epoch with a
generator seeded by (seed, epoch). So a checkpoint's data position is simply (epoch, batch within the epoch), and a
resumed run replays exactly what the interrupted one would have done: same batches, same dropout masks (RNG state
is in the checkpoint), same optimizer and LR schedule.

One step = one optimizer step over `effective_batch_size` sequences, in micro-batches of `micro_batch_size`. The
step's loss is the sum of token losses over all its micro-batches divided by the step's labeled tokens.

Stdout (see protocol.py): start, progress (every log_every_steps), checkpoint (reason steps | timer | signal |
final), eval (when validation_file is set), done. Checkpoints go to output_dir/checkpoints (newest
keep_checkpoints kept), the final adapter to output_dir/adapter.

Stopping: SIGTERM or SIGINT (and, with --watch-stdin, EOF on stdin; on Linux also the death of the parent process,
through PR_SET_PDEATHSIG) lets the current optimizer step finish, writes a checkpoint with reason "signal", and
exits 75. A stop that comes before this process finished its first step exits 75 at once with nothing new to save.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import checkpoint as ckpt
from .config import TrainConfig, fingerprint_hash, load_train_config
from .protocol import BadInput, ErrorType, Interrupted, emit

log = logging.getLogger("tuneloop_trainer.train")

# Recorded at import, before anything slow, so a parent that dies while we load torch is still noticed.
_PARENT_PID = os.getppid()
PR_SET_PDEATHSIG = 1
IGNORE_INDEX = -100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="training config, JSON (see config.py)")
    parser.add_argument("--resume", metavar="DIR", help="checkpoint directory to continue from (verified first)")
    parser.add_argument(
        "--watch-stdin",
        action="store_true",
        help="treat EOF on stdin as SIGTERM (the driver holds a pipe open; if the driver dies, the pipe closes)",
    )


def main(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config)
    if args.resume is not None and not os.path.isdir(args.resume):
        raise BadInput(f"no such checkpoint directory: {args.resume}", type=ErrorType.CHECKPOINT_INVALID,
                       field="--resume")  # fmt: skip
    stop = StopRequest()
    try:
        stop.install_signal_handlers()
        guard_against_orphaning(stop)
        if stop.is_set():
            raise Interrupted(stop.reason)
        if args.watch_stdin:
            watch_stdin(stop)
        run(cfg, resume=args.resume, stop=stop)
    except StopNow as err:
        raise Interrupted(str(err)) from None
    return 0


# ---------------------------------------------------------------------------------------------------- stopping


class StopNow(BaseException):
    """Raised by the signal handler while loading. A BaseException, like KeyboardInterrupt, so that library code's
    `except Exception` (transformers has many, around imports and loading) cannot swallow it."""


class StopRequest:
    """A flag the signal handlers and the stdin watcher set; the training loop reads it between steps.

    Until the loop calls `defer()` (while the model and data load, which can take minutes) there is nothing to
    save, so a signal raises StopNow at once instead (main reports it as Interrupted: exit 75): a preempted host's
    grace period is better spent exiting than finishing a model load.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self.deferred = False
        self._raised = False

    def set(self, reason: str) -> None:
        if self._event.is_set():
            log.warning("%s (already stopping: %s)", reason, self.reason)
            return
        self.reason = reason
        self._event.set()
        when = "after the current step, with a checkpoint" if self.deferred else "now: training has not started"
        log.warning("%s: stopping %s", reason, when)

    def is_set(self) -> bool:
        return self._event.is_set()

    def defer(self) -> None:
        """From now on a stop waits for the end of the current step (the loop checkpoints, then stops)."""
        self.deferred = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.set(f"received {signal.Signals(signum).name}")
            if not self.deferred and not self._raised:  # once: a second signal must not break the unwinding
                self._raised = True
                raise StopNow(f"{self.reason} before training started; nothing to checkpoint")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def guard_against_orphaning(stop: StopRequest) -> None:
    """On Linux, asks the kernel for SIGTERM when the parent dies, and catches a parent that died already."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != _PARENT_PID:
        stop.set(f"parent process {_PARENT_PID} exited before the trainer started")


def watch_stdin(stop: StopRequest) -> threading.Thread:
    """Reads (and discards) stdin on a daemon thread; EOF means the driver is gone."""

    def watch() -> None:
        # os.read on the raw descriptor, not sys.stdin.buffer: a daemon thread blocked inside the buffered reader
        # holds its lock, and the interpreter aborts at exit ("could not acquire lock for <stdin> at interpreter
        # shutdown") instead of exiting 0.
        try:
            fd = sys.stdin.fileno()
            while os.read(fd, 65536):
                pass
        except (OSError, ValueError):
            pass
        stop.set("stdin closed (the driver is gone)")
        if not stop.deferred:
            os.kill(os.getpid(), signal.SIGTERM)  # only the main thread can be interrupted: via its signal handler

    thread = threading.Thread(target=watch, name="watch-stdin", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------------------------------------------- data


@dataclass
class Plan:
    """What one epoch is made of, and how many optimizer steps the run takes."""

    items: list  # data.Pack when packing, else data.Example
    packed: bool
    steps_per_epoch: int
    total_steps: int
    tokens_per_epoch: int
    rows: int
    replay_rows: int
    dropped_rows: int
    data_sha256: dict[str, str]
    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def order(self, seed: int, epoch: int) -> list[int]:
        if epoch not in self._orders:
            self._orders.clear()  # one epoch at a time is all the loop needs
            self._orders[epoch] = epoch_order(seed, epoch, len(self.items))
        return self._orders[epoch]


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The permutation of an epoch's items: a function of (seed, epoch) only, never of global RNG state."""
    return seeded_permutation(f"epoch:{seed}:{epoch}", n)


def seeded_permutation(key: str, n: int) -> list[int]:
    """A permutation of range(n) determined by `key` alone (its own generator; the global RNGs are untouched)."""
    import torch

    digest = hashlib.sha256(f"tuneloop:{key}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randperm(n, generator=generator).tolist()


def sample_replay(replay_rows: list, n_train_rows: int, fraction: float, seed: int) -> list:
    """A deterministic sample of earlier rows, fraction × the new rows in size (all of them if fewer exist)."""
    want = round(fraction * n_train_rows)
    if want <= 0 or not replay_rows:
        return []
    if want >= len(replay_rows):
        log.info("replay: wanted %d rows, the replay file has %d; using all", want, len(replay_rows))
        return list(replay_rows)
    picked = sorted(random.Random(f"tuneloop-replay:{seed}").sample(range(len(replay_rows)), want))
    return [replay_rows[i] for i in picked]


def read_datasets(cfg: TrainConfig) -> tuple[list, list, list | None]:
    """(train rows, replay rows, validation rows or None), validated; no tokenizer needed, so it fails fast."""
    from .data import read_rows

    train_rows = read_rows(cfg.train_file)
    if not train_rows:
        raise BadInput(f"{cfg.train_file} has no rows", type=ErrorType.DATASET_INVALID, field="train_file")
    replay = []
    if cfg.replay_file is not None:
        replay = sample_replay(read_rows(cfg.replay_file), len(train_rows), cfg.replay_fraction, cfg.seed)
    validation = read_rows(cfg.validation_file) if cfg.validation_file is not None else None
    return train_rows, replay, validation


def build_plan(cfg: TrainConfig, tokenizer: Any, train_rows: list, replay_rows: list) -> Plan:
    from .data import count_tokens, encode_rows, pack

    examples, dropped = encode_rows(tokenizer, train_rows + replay_rows, cfg.max_length)
    if not examples:
        raise BadInput(f"no row of {cfg.train_file} has an assistant token within max_length={cfg.max_length}",
                       type=ErrorType.DATASET_INVALID, field="train_file")  # fmt: skip
    if cfg.packing:
        # Packs are built once, from a seeded shuffle, so replayed and new rows share packs rather than each
        # filling their own at the end; each epoch then shuffles the packs.
        examples = [examples[i] for i in seeded_permutation(f"pack:{cfg.seed}", len(examples))]
    items = pack(examples, cfg.max_length) if cfg.packing else examples
    steps_per_epoch = math.ceil(len(items) / cfg.effective_batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    hashes = {"train_file": ckpt.sha256_file(cfg.train_file)}
    if cfg.replay_file is not None:
        hashes["replay_file"] = ckpt.sha256_file(cfg.replay_file)
    return Plan(
        items=items,
        packed=cfg.packing,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        tokens_per_epoch=count_tokens(items),
        rows=len(train_rows),
        replay_rows=len(replay_rows),
        dropped_rows=dropped,
        data_sha256=hashes,
    )


def step_items(plan: Plan, cfg: TrainConfig, step: int) -> tuple[int, list[list]]:
    """(epoch, micro-batches of items) for 1-based optimizer step `step`."""
    epoch, batch = divmod(step - 1, plan.steps_per_epoch)
    order = plan.order(cfg.seed, epoch)
    chosen = order[batch * cfg.effective_batch_size : (batch + 1) * cfg.effective_batch_size]
    micro = cfg.micro_batch_size
    return epoch, [[plan.items[i] for i in chosen[j : j + micro]] for j in range(0, len(chosen), micro)]


def collate_items(items: list, pad_id: int, packed: bool, *, flash: bool = False) -> dict:
    from .data import collate, collate_padded

    if not packed:
        return collate_padded(items, pad_id)
    # flash_attention_2 separates packed sequences by position ids only in a single-row batch.
    return collate(items, pad_id, flatten=flash)


# ---------------------------------------------------------------------------------------------------- the math


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def labeled_tokens(batch: dict) -> int:
    """Tokens that carry a loss: labels shifted by one, as the model predicts token t+1 from position t."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())


def forward_loss_sum(model: Any, batch: dict, device: str, autocast: bool) -> Any:
    """Sum (not mean) of the next-token cross-entropy over the batch's labeled tokens."""
    import torch
    import torch.nn.functional as F

    inputs = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
    labels = batch["labels"].to(device)
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast):
        logits = model(**inputs, use_cache=False).logits
    shifted = logits[:, :-1, :].float()
    return F.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


@dataclass
class StepResult:
    loss: float
    tokens: int  # real (non-padding) tokens processed
    labeled: int
    micro_batches: int
    grad_norm: float


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, batches: list[dict], tokens: int,
                   runtime: Any) -> StepResult:  # fmt: skip
    """One optimizer step over `batches` (its micro-batches); `tokens` = real tokens in them, for throughput."""
    import torch

    labeled = sum(labeled_tokens(b) for b in batches)
    total = torch.zeros((), device=runtime.device)  # summed on the device: no host sync per micro-batch
    for batch in batches:
        loss_sum = forward_loss_sum(model, batch, runtime.device, runtime.autocast)
        if labeled:
            (loss_sum / labeled).backward()
        total += loss_sum.detach()
    params = [p for p in model.parameters() if p.requires_grad]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0)) if labeled else 0.0
    if labeled:
        optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    loss = float(total) / labeled if labeled else float("nan")
    return StepResult(loss, tokens, labeled, len(batches), grad_norm)


def make_optimizer(model: Any, cfg: TrainConfig, runtime: Any, total_steps: int) -> tuple[Any, Any]:
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0, fused=runtime.device == "cuda")
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    # transformers' "constant" ignores warmup; ours honours warmup_ratio like the other two.
    name = "constant_with_warmup" if cfg.lr_scheduler == "constant" else cfg.lr_scheduler
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def evaluation_loss(model: Any, tokenizer: Any, rows: list, cfg: TrainConfig, runtime: Any,
                    stop: StopRequest | None = None) -> tuple[float, int, int]:  # fmt: skip
    """(mean token loss, labeled tokens, rows used) of `rows` under `model`, without dropout."""
    import torch

    from .data import encode_rows

    examples, _dropped = encode_rows(tokenizer, rows, cfg.max_length)
    total, labeled = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(examples), cfg.micro_batch_size):
                if stop is not None and stop.is_set():
                    raise Interrupted(f"{stop.reason} during evaluation")
                batch = collate_items(examples[start : start + cfg.micro_batch_size], tokenizer.pad_token_id, False)
                total += float(forward_loss_sum(model, batch, runtime.device, runtime.autocast))
                labeled += labeled_tokens(batch)
    finally:
        model.train(was_training)
    return (total / labeled if labeled else float("nan")), labeled, len(examples)


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class Progress:
    """Running totals that survive a resume (they live in trainer_state.json)."""

    step: int = 0
    micro_steps: int = 0
    loss: float = float("nan")
    loss_sum: float = 0.0
    tokens_seen: int = 0
    elapsed_s: float = 0.0

    def state(self, cfg: TrainConfig, plan: Plan) -> dict:
        epoch, batch = divmod(self.step, plan.steps_per_epoch)
        fingerprint = cfg.fingerprint()
        return {
            "step": self.step,
            "total_steps": plan.total_steps,
            "epoch": self.step / plan.steps_per_epoch,
            "data_position": {
                "epoch": epoch,
                "batch": batch,
                "items_done_in_epoch": min(batch * cfg.effective_batch_size, len(plan.items)),
            },
            "micro_steps": self.micro_steps,
            "grad_accumulation": cfg.grad_accumulation,
            "steps_per_epoch": plan.steps_per_epoch,
            "items_per_epoch": len(plan.items),
            "config": fingerprint,
            "config_hash": fingerprint_hash(fingerprint),
            "data_sha256": plan.data_sha256,
            "loss": self.loss if math.isfinite(self.loss) else None,
            "loss_sum": self.loss_sum,
            "tokens_seen": self.tokens_seen,
            "elapsed_s": round(self.elapsed_s, 3),
            "run_id": cfg.run_id,
        }

    @classmethod
    def from_state(cls, state: dict) -> Progress:
        return cls(
            step=int(state["step"]),
            micro_steps=int(state["micro_steps"]),
            loss=float("nan") if state.get("loss") is None else float(state["loss"]),
            loss_sum=float(state["loss_sum"]),
            tokens_seen=int(state["tokens_seen"]),
            elapsed_s=float(state["elapsed_s"]),
        )


def check_resumable(state: dict, cfg: TrainConfig, plan: Plan, directory: str) -> None:
    """A checkpoint continues only the run that wrote it: same training settings, same data, same plan."""

    def bad(message: str) -> BadInput:
        return BadInput(f"{directory}: {message}", type=ErrorType.CHECKPOINT_INVALID, field="--resume")

    saved = state.get("config") or {}
    current = cfg.fingerprint()
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        detail = ", ".join(f"{k}: checkpoint {saved.get(k)!r}, config {current.get(k)!r}" for k in differing)
        raise bad(f"written with other training settings ({detail})")
    for name, digest in plan.data_sha256.items():
        if state.get("data_sha256", {}).get(name) != digest:
            raise bad(f"written for other data: {name} has changed since")
    if (state.get("steps_per_epoch"), state.get("items_per_epoch")) != (plan.steps_per_epoch, len(plan.items)):
        raise bad("written for another data layout (steps or items per epoch differ)")
    if not 0 <= int(state.get("step", -1)) <= plan.total_steps:
        raise bad(f"step {state.get('step')} is outside this run's 0..{plan.total_steps}")


def verify_resume(resume: str) -> None:
    try:
        ckpt.verify_checkpoint(resume)
    except ckpt.CorruptCheckpoint as err:
        raise BadInput(str(err), type=ErrorType.CHECKPOINT_INVALID, field="--resume") from None


def restore(resume: str, model: Any, optimizer: Any, scheduler: Any, cfg: TrainConfig, plan: Plan,
            restore_rng: bool) -> Progress:  # fmt: skip
    """Loads a checkpoint that verify_resume has passed, after checking it belongs to this run."""
    check_resumable(ckpt.read_trainer_state(resume), cfg, plan, resume)
    try:
        state = ckpt.load_checkpoint(resume, model, optimizer, scheduler, restore_rng=restore_rng, verify=False)
    except (ckpt.CorruptCheckpoint, KeyError, ValueError, RuntimeError) as err:
        raise BadInput(f"{resume}: cannot be loaded into this model: {err}", type=ErrorType.CHECKPOINT_INVALID,
                       field="--resume") from None  # fmt: skip
    log.info("resumed from %s at step %d", resume, state["step"])
    return Progress.from_state(state)


class Checkpointer:
    """Decides when to save, saves, reports, prunes."""

    def __init__(self, cfg: TrainConfig, plan: Plan, model: Any, optimizer: Any, scheduler: Any) -> None:
        self.cfg, self.plan = cfg, plan
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.last_save = time.monotonic()
        self.last_path: str | None = None
        self.last_step = -1

    def reason(self, step: int, stop: StopRequest) -> str | None:
        cfg = self.cfg
        if stop.is_set():
            return "signal"
        if step >= self.plan.total_steps:
            return "final"
        if cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0:
            return "steps"
        if cfg.checkpoint_every_minutes and time.monotonic() - self.last_save >= cfg.checkpoint_every_minutes * 60:
            return "timer"
        return None

    def save(self, progress: Progress, reason: str) -> str:
        started = time.monotonic()
        path = ckpt.save_checkpoint(
            self.cfg.checkpoint_root,
            progress.step,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            trainer_state=progress.state(self.cfg, self.plan),
        )
        self.last_save, self.last_path, self.last_step = time.monotonic(), path, progress.step
        log.info("checkpoint %s (%s) in %.2fs", path, reason, self.last_save - started)
        self.announce(progress.step, reason)
        ckpt.prune(self.cfg.checkpoint_root, self.cfg.keep_checkpoints)
        return path

    def announce(self, step: int, reason: str) -> None:
        """The `checkpoint` line for the newest save; a stop always ends with one of reason "signal"."""
        emit("checkpoint", step=step, path=os.path.abspath(self.last_path), reason=reason, run_id=self.cfg.run_id)


class Reporter:
    """Turns steps into `progress` lines: real-token throughput over the last window, ETA from this session."""

    def __init__(self, cfg: TrainConfig, plan: Plan, device: str, first_step: int) -> None:
        self.cfg, self.plan, self.device = cfg, plan, device
        self.session_start = self.window_start = time.monotonic()
        self.first_step = first_step
        self.window_tokens = 0

    def step_done(self, progress: Progress, result: StepResult, lr: float) -> None:
        self.window_tokens += result.tokens
        step = progress.step
        if step % self.cfg.log_every_steps and step != self.plan.total_steps:
            return
        now = time.monotonic()
        per_step = (now - self.session_start) / max(step - self.first_step, 1)
        fields = {
            "step": step,
            "total": self.plan.total_steps,
            "epoch": round(step / self.plan.steps_per_epoch, 4),
            "loss": result.loss,
            "lr": lr,
            "tokens_per_s": round(self.window_tokens / max(now - self.window_start, 1e-9), 1),
            "gpu_mem": gpu_memory(self.device),
            "eta_s": round(per_step * (self.plan.total_steps - step), 1),
            "grad_norm": result.grad_norm,
            "tokens": progress.tokens_seen,
            "run_id": self.cfg.run_id,
        }
        emit("progress", **fields)
        log.info("step %d/%d loss %.4f lr %.3g %.0f tok/s", step, self.plan.total_steps, result.loss, lr,
                 fields["tokens_per_s"])  # fmt: skip
        self.window_start, self.window_tokens = now, 0


def gpu_memory(device: str) -> int | None:
    if device != "cuda":
        return None
    import torch

    return int(torch.cuda.max_memory_allocated())


def train_loop(model: Any, optimizer: Any, scheduler: Any, tokenizer: Any, cfg: TrainConfig, plan: Plan,
               runtime: Any, progress: Progress, stop: StopRequest) -> Checkpointer:  # fmt: skip
    from .data import count_tokens

    saver = Checkpointer(cfg, plan, model, optimizer, scheduler)
    reporter = Reporter(cfg, plan, runtime.device, progress.step)
    session_start_step = progress.step
    flash = runtime.attn_implementation == "flash_attention_2"
    tick = time.monotonic()
    stop.defer()
    while progress.step < plan.total_steps:
        if stop.is_set() and progress.step == session_start_step:
            raise Interrupted(f"{stop.reason} before the first step; nothing new to checkpoint")
        _epoch, micro_items = step_items(plan, cfg, progress.step + 1)
        batches = [collate_items(items, tokenizer.pad_token_id, plan.packed, flash=flash) for items in micro_items]
        tokens = sum(count_tokens(items) for items in micro_items)
        lr = scheduler.get_last_lr()[0]  # the rate this step uses; after it, the scheduler shows the next one
        result = optimizer_step(model, optimizer, scheduler, batches, tokens, runtime)
        progress.step += 1
        progress.micro_steps += result.micro_batches
        progress.loss = result.loss
        progress.loss_sum += result.loss
        progress.tokens_seen += result.tokens
        now = time.monotonic()  # wall time of the loop, checkpoint writes included
        progress.elapsed_s += now - tick
        tick = now
        reporter.step_done(progress, result, lr)
        reason = saver.reason(progress.step, stop)
        if reason:
            saver.save(progress, reason)
        if stop.is_set():  # the stop may have come after `reason` was decided, even during the save
            if reason is None:
                saver.save(progress, "signal")
            elif reason != "signal":  # this step's checkpoint was being written when it came: it stands
                saver.announce(progress.step, "signal")
            raise Interrupted(f"{stop.reason}; checkpoint at step {progress.step}: {saver.last_path}")
    return saver


def save_adapter(model: Any, tokenizer: Any, cfg: TrainConfig) -> str:
    """The final adapter (safetensors) and the tokenizer, in output_dir/adapter, replaced whole."""
    final = cfg.adapter_dir
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    ckpt.replace_dir(tmp, final)
    return os.path.abspath(final)


def run(cfg: TrainConfig, *, resume: str | None = None, stop: StopRequest | None = None,
        restore_rng: bool = True) -> dict:  # fmt: skip
    """Trains per `cfg` (continuing from checkpoint dir `resume`), emits the protocol lines, returns `done`'s fields.

    `restore_rng=False` exists for the test that proves restoring RNG state matters; never use it otherwise.
    """
    from .model import load_for_training, resolve_runtime

    stop = stop or StopRequest()
    log.info("preparing: data %s, base %s%s", cfg.train_file, cfg.base_model, f", resuming {resume}" if resume else "")
    if resume is not None:
        verify_resume(resume)  # before the model loads: a bad checkpoint should fail in seconds, not minutes
    train_rows, replay_rows, validation_rows = read_datasets(cfg)
    runtime = resolve_runtime(cfg)
    seed_everything(cfg.seed)
    model, tokenizer = load_for_training(cfg, runtime)
    plan = build_plan(cfg, tokenizer, train_rows, replay_rows)
    optimizer, scheduler = make_optimizer(model, cfg, runtime, plan.total_steps)
    progress = Progress()
    if resume is not None:
        progress = restore(resume, model, optimizer, scheduler, cfg, plan, restore_rng)
    if stop.is_set():
        raise Interrupted(f"{stop.reason} before training started; nothing to checkpoint")
    emit_start(cfg, plan, runtime, model, progress, resume)
    saver = train_loop(model, optimizer, scheduler, tokenizer, cfg, plan, runtime, progress, stop)
    final_checkpoint = saver.last_path
    if saver.last_step != progress.step and resume is not None:
        final_checkpoint = os.path.abspath(resume)  # resumed from the final checkpoint itself: nothing new to save
    adapter_dir = save_adapter(model, tokenizer, cfg)
    eval_loss = None
    if validation_rows is not None and cfg.eval_at_end:
        try:
            eval_loss = _final_eval(model, tokenizer, validation_rows, cfg, runtime, progress.step, stop)
        except Interrupted:
            emit("checkpoint", step=progress.step, path=final_checkpoint, reason="signal", run_id=cfg.run_id)
            raise
    done = {
        "outputs": {
            "adapter_dir": adapter_dir,
            "checkpoint_dir": final_checkpoint,
            "checkpoint_root": os.path.abspath(cfg.checkpoint_root),
        },
        "metrics": {
            "train_loss": progress.loss,
            "final_loss": progress.loss,
            "mean_train_loss": progress.loss_sum / progress.step if progress.step else None,
            "eval_loss": eval_loss,
            "steps": progress.step,
            "tokens": progress.tokens_seen,
            "seconds": round(progress.elapsed_s, 3),
        },
    }
    emit("done", run_id=cfg.run_id, **done)
    return done


def emit_start(cfg: TrainConfig, plan: Plan, runtime: Any, model: Any, progress: Progress,
               resume: str | None) -> None:  # fmt: skip
    from .model import activation_checkpointing, count_parameters

    trainable, total = count_parameters(model)
    emit(
        "start",
        command="train",
        run_id=cfg.run_id,
        step=progress.step,
        total_steps=plan.total_steps,
        resumed_from=os.path.abspath(resume) if resume else None,
        device=runtime.device,
        precision=runtime.precision,
        attn_implementation=runtime.attn_implementation,
        gradient_checkpointing=activation_checkpointing(model),
        method=cfg.method,
        trainable_params=trainable,
        total_params=total,
        tokens_per_epoch=plan.tokens_per_epoch,
        sequences_per_epoch=len(plan.items),
        steps_per_epoch=plan.steps_per_epoch,
        rows=plan.rows,
        replay_rows=plan.replay_rows,
        dropped_rows=plan.dropped_rows,
    )


def _final_eval(model: Any, tokenizer: Any, rows: list, cfg: TrainConfig, runtime: Any, step: int,
                stop: StopRequest) -> float | None:  # fmt: skip
    loss, tokens, used = evaluation_loss(model, tokenizer, rows, cfg, runtime, stop)
    if not used:
        log.warning("no validation row fits max_length=%d; no eval", cfg.max_length)
        return None
    perplexity = math.exp(loss) if loss < 700 else float("inf")
    emit("eval", step=step, loss=loss, perplexity=perplexity, tokens=tokens, rows=used, run_id=cfg.run_id)
    return loss
