"""The two sides of a bench run: ours (the trainer's own engine) and the baseline (a transformers Trainer + PEFT).
Both record a StepRecord per optimizer step.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any

from .. import engine
from ..config import TrainConfig
from ..runtime import synchronize
from .inputs import Env
from .measure import StepClock, StepRecord, model_facts


def train_config(env: Env, method: str) -> TrainConfig:
    """The TrainConfig our trainer would run with: the bench's settings, and a placeholder for the data file it
    never reads (the rows come from `env`)."""
    cfg = env.cfg
    return TrainConfig(
        base_model=env.model_dir,
        train_file=os.path.join(env.work_dir, "rows.jsonl"),
        output_dir=os.path.join(env.work_dir, "out"),
        method=method,
        lora=cfg.lora,
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
    """Our trainer's engine, as train runs it (engine.run_steps): each step's rows packed (data.pack), micro-batches
    of micro_batch_size packs, labeled-token loss, bf16 autocast, fused AdamW on CUDA."""
    from ..data import pack
    from ..model import load_model
    from ..runtime import resolve_runtime

    cfg = env.cfg
    tcfg = train_config(env, method)
    runtime = resolve_runtime(tcfg)
    engine.seed_everything(cfg.seed)
    started = time.monotonic()
    model = load_model(tcfg, runtime)
    synchronize(env.device)
    load_s = time.monotonic() - started
    optimizer, scheduler = engine.make_optimizer(model, tcfg, runtime, cfg.total_steps)
    mbs = cfg.micro_batch_size
    clock = StepClock(env.device, cfg.warmup_steps)
    records, micro_batches = [], []

    def step_packs(step: int) -> list[list]:
        packs = pack(env.step_rows(step - 1), cfg.seq_len)
        return [packs[i : i + mbs] for i in range(0, len(packs), mbs)]

    def after_step(step: int, result: engine.StepResult, _lr: float) -> None:
        seconds = clock.step_end(step)
        records.append(StepRecord(result.tokens, result.padded_tokens, seconds, result.loss))
        micro_batches.append(result.micro_batches)

    engine.run_steps(model, optimizer, scheduler, runtime, pad_id=env.pad_id, packed=True,
                     steps=range(1, cfg.total_steps + 1), micro_batches=step_packs, after_step=after_step)  # fmt: skip
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
        from ..data import Example, collate_padded

        batch = collate_padded([Example(list(f["input_ids"]), list(f["labels"])) for f in features], self.pad_id)
        self.batches.append((int(batch["attention_mask"].sum()), int(batch["input_ids"].numel())))
        return batch


def run_baseline(env: Env, method: str) -> dict:
    """A plain transformers Trainer + PEFT run: padded batches, no packing, the Trainer's defaults elsewhere."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, PrinterCallback, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    from ..model import wants_checkpointing

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
