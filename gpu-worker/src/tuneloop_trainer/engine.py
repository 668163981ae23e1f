"""The training engine: the optimizer step and the loop over steps, shared by train and bench.

    from tuneloop_trainer import engine
    engine.seed_everything(cfg.seed)
    optimizer, scheduler = engine.make_optimizer(model, cfg, runtime, total_steps)
    engine.run_steps(model, optimizer, scheduler, runtime, pad_id=pad, packed=True, steps=range(1, total_steps + 1),
                     micro_batches=lambda step: [...lists of data.Pack...], after_step=on_step)

One step = one optimizer step over its micro-batches. The step's loss is the sum of token losses over all its
micro-batches divided by the step's labeled tokens (so micro-batches with few labeled tokens do not weigh more),
next-token cross-entropy on labeled tokens only, in bf16 autocast on CUDA; gradients are clipped to norm 1.
train adds the data plan, checkpoints, progress lines and stopping around it (train.train_loop); bench adds a clock
(bench.sides.run_ours): both time and run this same loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from .data import IGNORE_INDEX
from .lifecycle import StopRequest
from .protocol import Interrupted
from .runtime import Runtime


class OptimizerSettings(Protocol):
    learning_rate: float
    lr_scheduler: str  # "cosine" | "linear" | "constant"
    warmup_ratio: float


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def collate_items(items: list, pad_id: int, packed: bool, *, flash: bool = False) -> dict:
    """A micro-batch of data.Pack (packed) or data.Example (padded) as model inputs."""
    from .data import collate, collate_padded

    if not packed:
        return collate_padded(items, pad_id)
    # flash_attention_2 separates packed sequences by position ids only in a single-row batch.
    return collate(items, pad_id, flatten=flash)


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
    padded_tokens: int  # positions the model computed, padding included


def optimizer_step(model: Any, optimizer: Any, scheduler: Any, batches: list[dict], tokens: int,
                   runtime: Runtime) -> StepResult:  # fmt: skip
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
    padded = sum(int(b["input_ids"].numel()) for b in batches)
    return StepResult(loss, tokens, labeled, len(batches), grad_norm, padded)


def make_optimizer(model: Any, settings: OptimizerSettings, runtime: Runtime, total_steps: int) -> tuple[Any, Any]:
    """AdamW (fused on CUDA, no weight decay) on the trainable parameters, and the LR schedule after warmup."""
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, weight_decay=0.0, fused=runtime.device == "cuda")
    warmup = math.ceil(settings.warmup_ratio * total_steps)
    # transformers' "constant" ignores warmup; ours honours warmup_ratio like the other two.
    name = "constant_with_warmup" if settings.lr_scheduler == "constant" else settings.lr_scheduler
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    return optimizer, scheduler


def run_steps(model: Any, optimizer: Any, scheduler: Any, runtime: Runtime, *, pad_id: int, packed: bool,
              steps: Iterable[int], micro_batches: Callable[[int], list[list]],
              after_step: Callable[[int, StepResult, float], None],
              before_step: Callable[[int], None] | None = None) -> None:  # fmt: skip
    """The training loop: for each 1-based step, its micro-batches of items (`micro_batches(step)`) are collated
    and trained on in one optimizer step; `after_step(step, result, lr)` gets the rate the step used. Either hook
    may raise to end the loop (train's stop does)."""
    from .data import count_tokens

    flash = runtime.attn_implementation == "flash_attention_2"
    for step in steps:
        if before_step is not None:
            before_step(step)
        items = micro_batches(step)
        batches = [collate_items(micro, pad_id, packed, flash=flash) for micro in items]
        tokens = sum(count_tokens(micro) for micro in items)
        lr = scheduler.get_last_lr()[0]  # the rate this step uses; after it, the scheduler shows the next one
        result = optimizer_step(model, optimizer, scheduler, batches, tokens, runtime)
        after_step(step, result, lr)


def evaluation_loss(model: Any, tokenizer: Any, rows: list, cfg: Any, runtime: Runtime,
                    stop: StopRequest | None = None) -> tuple[float, int, int]:  # fmt: skip
    """(mean token loss, labeled tokens, rows used) of `rows` under `model`, without dropout, computed as the
    training loss is; `cfg` gives max_length and micro_batch_size. A stop between batches raises Interrupted."""
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
