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
step's loss is the sum of token losses over all its micro-batches divided by the step's labeled tokens. The step and
the loop are engine.py's (which bench times too); this module adds the data plan, checkpoints, progress and stops.

Stdout (see protocol.py): start, progress (every log_every_steps), checkpoint (reason steps | timer | signal |
final), eval (when validation_file is set: every eval_every_steps steps and at the end), done. Checkpoints go to output_dir/checkpoints (newest
keep_checkpoints kept), the final adapter to output_dir/adapter.

Stopping (lifecycle.py): SIGTERM or SIGINT (and, with --watch-stdin, EOF on stdin; on Linux also the death of the
parent process, through PR_SET_PDEATHSIG) lets the current optimizer step finish, writes a checkpoint with reason
"signal", and exits 75. A stop that comes before this process finished its first step exits 75 at once with nothing
new to save.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import checkpoint as ckpt
from . import engine, lifecycle
from .config import TrainConfig, fingerprint_hash
from .lifecycle import StopRequest
from .protocol import BadInput, ErrorType, Interrupted, emit
from .runtime import Runtime, peak_gpu_memory

log = logging.getLogger("tuneloop_trainer.train")


CONFIG = TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", metavar="DIR", help="checkpoint directory to continue from (verified first)")
    lifecycle.add_arguments(parser)


def main(args: argparse.Namespace, cfg: TrainConfig) -> int:
    if args.resume is not None and not os.path.isdir(args.resume):
        raise BadInput(f"no such checkpoint directory: {args.resume}", type=ErrorType.CHECKPOINT_INVALID,
                       field="--resume")  # fmt: skip
    with lifecycle.supervised(args.watch_stdin) as stop:
        run(cfg, resume=args.resume, stop=stop)
    return 0


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

    def __init__(self, cfg: TrainConfig, plan: Plan, device: str, first_step: int,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.cfg, self.plan, self.device, self.clock = cfg, plan, device, clock
        self.session_start = self.window_start = clock()
        self.first_step = first_step
        self.window_tokens = 0

    def step_done(self, progress: Progress, result: engine.StepResult, lr: float) -> None:
        self.window_tokens += result.tokens
        step = progress.step
        if step % self.cfg.log_every_steps and step != self.plan.total_steps:
            return
        now = self.clock()
        per_step = (now - self.session_start) / max(step - self.first_step, 1)
        fields = {
            "step": step,
            "total": self.plan.total_steps,
            "epoch": round(step / self.plan.steps_per_epoch, 4),
            "loss": result.loss,
            "lr": lr,
            "tokens_per_s": round(self.window_tokens / max(now - self.window_start, 1e-9), 1),
            "gpu_mem": peak_gpu_memory(self.device),
            "eta_s": round(per_step * (self.plan.total_steps - step), 1),
            "grad_norm": result.grad_norm,
            "tokens": progress.tokens_seen,
            "run_id": self.cfg.run_id,
        }
        emit("progress", **fields)
        log.info("step %d/%d loss %.4f lr %.3g %.0f tok/s", step, self.plan.total_steps, result.loss, lr,
                 fields["tokens_per_s"])  # fmt: skip
        self.window_start, self.window_tokens = now, 0

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Time spent on something other than training steps (a validation pass): not in tokens/s, still in ETA."""
        began = self.clock()
        try:
            yield
        finally:
            self.window_start += self.clock() - began


def train_loop(model: Any, optimizer: Any, scheduler: Any, tokenizer: Any, cfg: TrainConfig, plan: Plan,
               runtime: Runtime, progress: Progress, stop: StopRequest,
               validation_rows: list | None = None) -> Checkpointer:  # fmt: skip
    """engine.run_steps over the plan's remaining steps, with progress lines, checkpoints and stopping."""
    saver = Checkpointer(cfg, plan, model, optimizer, scheduler)
    reporter = Reporter(cfg, plan, runtime.device, progress.step)
    session_start_step = progress.step
    tick = time.monotonic()

    def before_step(_step: int) -> None:
        if stop.is_set() and progress.step == session_start_step:
            raise Interrupted(f"{stop.reason} before the first step; nothing new to checkpoint")

    def after_step(step: int, result: engine.StepResult, lr: float) -> None:
        nonlocal tick
        progress.step = step
        progress.micro_steps += result.micro_batches
        progress.loss = result.loss
        progress.loss_sum += result.loss
        progress.tokens_seen += result.tokens
        now = time.monotonic()  # wall time of the loop, checkpoint writes included
        progress.elapsed_s += now - tick
        tick = now
        reporter.step_done(progress, result, lr)
        if validation_rows and cfg.eval_every_steps and step % cfg.eval_every_steps == 0 and step < plan.total_steps:
            # The validation curve. In eval mode without gradients: no dropout, so no RNG drawn, and the training
            # that follows is exactly what it would have been. A stop during it skips it; the checkpoint below runs.
            with reporter.pause(), contextlib.suppress(Interrupted):
                _eval(model, tokenizer, validation_rows, cfg, runtime, step, stop)
        reason = saver.reason(step, stop)
        if reason:
            saver.save(progress, reason)
        if stop.is_set():  # the stop may have come after `reason` was decided, even during the save
            if reason is None:
                saver.save(progress, "signal")
            elif reason != "signal":  # this step's checkpoint was being written when it came: it stands
                saver.announce(step, "signal")
            raise Interrupted(f"{stop.reason}; checkpoint at step {step}: {saver.last_path}")

    stop.defer()
    engine.run_steps(model, optimizer, scheduler, runtime, pad_id=tokenizer.pad_token_id, packed=plan.packed,
                     steps=range(progress.step + 1, plan.total_steps + 1),
                     micro_batches=lambda step: step_items(plan, cfg, step)[1],
                     before_step=before_step, after_step=after_step)  # fmt: skip
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
    from .model import load_for_training
    from .runtime import resolve_runtime

    stop = stop or StopRequest()
    log.info("preparing: data %s, base %s%s", cfg.train_file, cfg.base_model, f", resuming {resume}" if resume else "")
    if resume is not None:
        verify_resume(resume)  # before the model loads: a bad checkpoint should fail in seconds, not minutes
    train_rows, replay_rows, validation_rows = read_datasets(cfg)
    runtime = resolve_runtime(cfg)
    engine.seed_everything(cfg.seed)
    model, tokenizer = load_for_training(cfg, runtime)
    plan = build_plan(cfg, tokenizer, train_rows, replay_rows)
    optimizer, scheduler = engine.make_optimizer(model, cfg, runtime, plan.total_steps)
    progress = Progress()
    if resume is not None:
        progress = restore(resume, model, optimizer, scheduler, cfg, plan, restore_rng)
    if stop.is_set():
        raise Interrupted(f"{stop.reason} before training started; nothing to checkpoint")
    emit_start(cfg, plan, runtime, model, progress, resume)
    saver = train_loop(model, optimizer, scheduler, tokenizer, cfg, plan, runtime, progress, stop, validation_rows)
    final_checkpoint = saver.last_path
    if saver.last_step != progress.step and resume is not None:
        final_checkpoint = os.path.abspath(resume)  # resumed from the final checkpoint itself: nothing new to save
    adapter_dir = save_adapter(model, tokenizer, cfg)
    eval_loss = None
    if validation_rows is not None and cfg.eval_at_end:
        try:
            eval_loss = _eval(model, tokenizer, validation_rows, cfg, runtime, progress.step, stop)
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


def emit_start(cfg: TrainConfig, plan: Plan, runtime: Runtime, model: Any, progress: Progress,
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


def _eval(model: Any, tokenizer: Any, rows: list, cfg: TrainConfig, runtime: Runtime, step: int,
                stop: StopRequest) -> float | None:  # fmt: skip
    loss, tokens, used = engine.evaluation_loss(model, tokenizer, rows, cfg, runtime, stop)
    if not used:
        log.warning("no validation row fits max_length=%d; no eval", cfg.max_length)
        return None
    perplexity = math.exp(loss) if loss < 700 else float("inf")
    emit("eval", step=step, loss=loss, perplexity=perplexity, tokens=tokens, rows=used, run_id=cfg.run_id)
    return loss
