"""evaluate: held-out loss, perplexity and greedy generations for a base model and its adapters.

    python -m tuneloop_trainer evaluate --config eval.json
    python -m tuneloop_trainer evaluate --config eval.json --watch-stdin     # stdin EOF counts as SIGTERM

eval.json (read as every command's config is, see config.py: unknown keys are refused, relative paths are relative
to the file's own directory):
    {
      "base_model": "/models/base",                  # local HF model directory
      "versions": {"production": "/adapters/v7",     # version name -> LoRA adapter directory,
                   "candidate": "/adapters/v8",      #   or null for the base model itself
                   "base": null},
      "validation_file": "heldout.jsonl",            # optional: training rows ({"messages": [...]}) to score
      "prompts_file": "prompts.jsonl",               # optional: {"id": str, "messages": [...ending with user]}
      "output_file": "generations.jsonl",            # required with prompts_file: what the judge reads
      "max_new_tokens": 256, "max_length": 2048, "batch_size": 4,
      "output_schema": {...} or "schema.json",       # optional: JSON schema the generations should satisfy
      "device": "auto",                              # auto | cpu | cuda                    (see runtime.py)
      "precision": "auto"                            # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    }

For each version, in the order given:
- loss: mean cross-entropy over the labeled tokens of validation_file, labeled exactly as for training (assistant
  content and end-of-turn tokens; see data.encode), and perplexity = exp(loss);
- greedy generations (do_sample=False) for every prompt, stopping at the end-of-turn/eos tokens; a line per
  version x prompt in output_file: {"version", "id", "output", "tokens", "json_valid"?} ("tokens": generated tokens
  before the stop token; "json_valid" only with output_schema: the output, stripped of surrounding whitespace,
  parses as JSON and validates against the schema).

Prints `start`, `progress` after every batch, one `eval` per version {"version", "loss", "perplexity", "tokens",
"json_valid_rate"?} ("tokens": labeled tokens scored; loss/perplexity are null without validation_file), then
`done` {"outputs": {"generations": path | null}, "metrics": {version: {...}}}. The base is loaded once; adapters are
swapped with peft (load_adapter/set_adapter, disable_adapter for the base). The config, the rows, the prompts and
the schema are all checked before any model is loaded. A stop (SIGTERM, SIGINT, the parent's death; see
lifecycle.py) ends it at once with exit 75 and no output_file.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from . import lifecycle
from .config import path_field
from .data import encode_prompt, iter_jsonl, read_rows, validate_messages
from .protocol import BadInput, ErrorType, emit
from .runtime import DEVICES, PRECISIONS
from .validate import bad, check_choice, check_int, check_string

log = logging.getLogger("tuneloop_trainer.evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lifecycle.add_arguments(parser)


def main(args: argparse.Namespace, config: EvalConfig) -> int:
    inputs = load_inputs(config)  # rows, prompts and schema: checked before anything slow
    with lifecycle.supervised(args.watch_stdin, "before the evaluation finished; nothing written"):
        evaluate(config, inputs)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Config


@dataclass
class EvalConfig:
    base_model: str = path_field("model")
    versions: dict[str, str | None] = path_field("adapter", each=True)
    validation_file: str | None = path_field("file", None)
    prompts_file: str | None = path_field("file", None)
    output_file: str | None = path_field("output_file", None)
    max_new_tokens: int = 256
    max_length: int = 2048
    batch_size: int = 4
    output_schema: dict | str | None = path_field("file", None)  # a schema, or the file that holds one
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_string("base_model", self.base_model)
        if not isinstance(self.versions, dict) or not self.versions:
            raise bad("versions", "must be a non-empty object of version name -> adapter directory or null")
        for name, adapter in self.versions.items():
            if not name.strip():
                raise bad("versions", "version names must not be empty")
            check_string(f"versions.{name}", adapter, optional=True)
        check_string("validation_file", self.validation_file, optional=True)
        check_string("prompts_file", self.prompts_file, optional=True)
        if self.validation_file is None and self.prompts_file is None:
            raise bad("validation_file", "set validation_file, prompts_file or both: there is nothing to evaluate")
        if self.prompts_file is not None:
            if not isinstance(self.output_file, str) or not self.output_file:
                raise bad("output_file", "is required with prompts_file (where the generations go)")
        elif self.output_file is not None:
            raise bad("output_file", "is set but prompts_file is not: there would be nothing to write")
        check_int("max_new_tokens", self.max_new_tokens, low=1)
        check_int("max_length", self.max_length, low=2)
        check_int("batch_size", self.batch_size, low=1)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        if self.output_schema is not None:
            if self.prompts_file is None:
                raise bad("output_schema", "needs prompts_file: only generations are checked against it")
            if isinstance(self.output_schema, str):
                check_string("output_schema", self.output_schema)
            else:
                check_schema(self.output_schema)


CONFIG = EvalConfig


def check_schema(schema: Any) -> dict:
    """`schema` if it is a valid JSON schema; BadInput(field="output_schema") otherwise."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, (dict, bool)):
        raise bad("output_schema", "must be a JSON schema (an object) or the path of a file holding one")
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        raise bad("output_schema", f"not a valid JSON schema: {err.message}") from err
    return schema


def read_schema(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad("output_schema", f"cannot read {path} as JSON: {err}") from err
    return check_schema(schema)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs (read and checked before any model is loaded)


@dataclass
class EvalInputs:
    rows: list[list[dict]]
    prompts: list[tuple[str, list[dict]]]
    schema: dict | None  # output_schema, read and checked


def read_prompts(path: str) -> list[tuple[str, list[dict]]]:
    """Reads {"id", "messages"} lines (messages end with a user turn); BadInput(DATASET_INVALID, "path:line")."""
    prompts: list[tuple[str, list[dict]]] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        pid = obj.get("id")
        if not isinstance(pid, str) or not pid:
            raise BadInput('"id" must be a non-empty string', type=ErrorType.DATASET_INVALID, field=where)
        if pid in seen:
            raise BadInput(f"id {pid!r} already used on line {seen[pid]}", type=ErrorType.DATASET_INVALID, field=where)
        seen[pid] = lineno
        prompts.append((pid, validate_messages(obj.get("messages"), where, final_role="user")))
    if not prompts:
        raise BadInput(f"{path} holds no prompts", type=ErrorType.DATASET_INVALID, field=path)
    return prompts


def load_inputs(config: EvalConfig) -> EvalInputs:
    rows = read_rows(config.validation_file) if config.validation_file else []
    prompts = read_prompts(config.prompts_file) if config.prompts_file else []
    schema = config.output_schema
    if isinstance(schema, str):
        schema = read_schema(schema)
    return EvalInputs(rows, prompts, schema)


# ---------------------------------------------------------------------------------------------------------------------
# Model work


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end an answer: the generation config's eos ids, the tokenizer's eos and `<|im_end|>` if known."""
    ids: list[int] = []
    gen = getattr(model, "generation_config", None)
    eos = getattr(gen, "eos_token_id", None)
    ids.extend(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(im_end, int) and im_end != tokenizer.unk_token_id and "<|im_end|>" in tokenizer.get_vocab():
        ids.append(im_end)
    out = list(dict.fromkeys(ids))
    if not out:
        raise BadInput(
            "the model has no eos token to stop generations at", type=ErrorType.MODEL_INVALID, field="base_model"
        )
    return out


def greedy_generate(
    model: Any, tokenizer: Any, prompts: list[list[dict]], max_new_tokens: int, *, batch_size: int = 8
) -> list[str]:
    """Greedy answers to conversations ending with a user turn, rendered with the tokenizer's chat template and
    add_generation_prompt=True (data.encode_prompt), cut at the first stop token (stop_token_ids), decoded without
    special tokens. Batches are left-padded; the answers do not depend on batch_size."""
    return [text for text, _ in _greedy(model, tokenizer, prompts, max_new_tokens, batch_size)]


def _greedy(
    model: Any, tokenizer: Any, prompts: list[list[dict]], max_new_tokens: int, batch_size: int, on_batch=None
) -> list[tuple[str, int]]:
    import torch
    from transformers import GenerationConfig

    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]
    device = next(model.parameters()).device
    gen = copy.deepcopy(getattr(model, "generation_config", None) or GenerationConfig())
    # greedy, whatever sampling settings the model ships with
    for name, value in {
        "do_sample": False, "num_beams": 1, "temperature": None, "top_p": None, "top_k": None, "min_p": None,
        "repetition_penalty": None, "max_length": None, "max_new_tokens": max_new_tokens, "eos_token_id": stops,
        "pad_token_id": pad_id, "bos_token_id": None,
    }.items():  # fmt: skip
        setattr(gen, name, value)

    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths together: less padding
    results: list[tuple[str, int]] = [("", 0)] * len(encoded)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(encoded[i])) + encoded[i] for i in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in chunk], device=device)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=gen)
        for row, i in enumerate(chunk):
            new = out[row, width:].tolist()
            cut = next((k for k, t in enumerate(new) if t in stops), len(new))
            results[i] = (tokenizer.decode(new[:cut], skip_special_tokens=True), cut)
        if on_batch:
            on_batch()
    return results


def heldout_loss(model: Any, examples: list, pad_id: int, batch_size: int, on_batch=None) -> tuple[float, int]:
    """(mean cross-entropy over labeled tokens, labeled tokens) with the training loss's shift and masking."""
    import torch
    import torch.nn.functional as F

    from .data import IGNORE_INDEX, collate_padded

    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collate_padded([examples[i] for i in order[start : start + batch_size]], pad_id)
        with torch.inference_mode():
            logits = model(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                use_cache=False,
            ).logits
            labels = batch["labels"].to(device)
            for row in range(logits.shape[0]):  # one row at a time: fp32 logits of a 128k vocabulary are large
                target = labels[row, 1:]
                total += F.cross_entropy(
                    logits[row, :-1].float(), target, ignore_index=IGNORE_INDEX, reduction="sum"
                ).item()
                count += int((target != IGNORE_INDEX).sum())
        if on_batch:
            on_batch()
    return (total / count if count else float("nan")), count


def json_valid(text: str, validator: Any) -> bool:
    try:
        value = json.loads(text.strip())
    except ValueError:
        return False
    return bool(validator.is_valid(value))


def evaluate(config: EvalConfig, inputs: EvalInputs) -> dict[str, dict]:
    """Runs the evaluation and emits its protocol lines; returns the metrics per version."""
    import torch
    from transformers import AutoTokenizer

    from .data import encode_rows
    from .model import load_adapter, load_for_inference
    from .runtime import resolve_runtime

    runtime = resolve_runtime(config)
    device = runtime.device
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    examples, dropped = encode_rows(tokenizer, inputs.rows, config.max_length)  # template errors before the weights
    if inputs.rows and not examples:
        raise BadInput(
            f"no validation row has an assistant token within max_length={config.max_length}",
            type=ErrorType.DATASET_INVALID,
            field="validation_file",
        )
    for _, messages in inputs.prompts:
        encode_prompt(tokenizer, messages)
    validator = None
    if inputs.schema is not None:
        from jsonschema.validators import validator_for

        validator = validator_for(inputs.schema)(inputs.schema)

    loss_batches = math.ceil(len(examples) / config.batch_size)
    gen_batches = math.ceil(len(inputs.prompts) / config.batch_size)
    total_steps = len(config.versions) * (loss_batches + gen_batches)
    emit(
        "start",
        command="evaluate",
        device=device,
        precision=runtime.precision,
        versions=list(config.versions),
        validation_rows=len(examples),
        dropped_rows=dropped,
        prompts=len(inputs.prompts),
        step=0,
        total_steps=total_steps,
    )
    t0 = time.time()
    step = 0

    def tick() -> None:
        nonlocal step
        step += 1
        elapsed = time.time() - t0
        emit("progress", step=step, total=total_steps, eta_s=round(elapsed / step * (total_steps - step), 1))

    model = load_for_inference(config.base_model, runtime)
    peft_model = None
    active: str | None = None
    metrics: dict[str, dict] = {}
    lines: list[dict] = []
    for index, (version, adapter) in enumerate(config.versions.items()):
        if adapter is None:
            context = peft_model.disable_adapter() if peft_model is not None else nullcontext()
            runner = peft_model if peft_model is not None else model
        else:
            name = f"v{index}"
            peft_model = load_adapter(model, peft_model, adapter, name=name, field=f"versions.{version}")
            if active is not None:
                peft_model.delete_adapter(active)  # one adapter in memory at a time
            active = name
            context, runner = nullcontext(), peft_model
        runner.eval()
        # In float32 an adapter is merged into the base weights while it is evaluated, and taken out after (the base
        # comes back within float32 rounding): unmerged, LoRA's two extra matmuls per module cost CPU generation a
        # third of its time. In bf16 the round trip would move the base by whole bf16 steps, so it stays unmerged.
        merged = adapter is not None and runtime.precision == "fp32"
        if merged:
            peft_model.merge_adapter()
        with context:
            loss, tokens = (None, 0)
            if examples:
                loss, tokens = heldout_loss(runner, examples, pad_id, config.batch_size, tick)
            answers = _greedy(
                runner, tokenizer, [m for _, m in inputs.prompts], config.max_new_tokens, config.batch_size, tick
            )
        if merged:
            peft_model.unmerge_adapter()
        result: dict[str, Any] = {
            "loss": loss,
            "perplexity": _perplexity(loss) if loss is not None else None,
            "tokens": tokens,
        }
        for (pid, _), (text, n) in zip(inputs.prompts, answers, strict=True):
            line: dict[str, Any] = {"version": version, "id": pid, "output": text, "tokens": n}
            if validator is not None:
                line["json_valid"] = json_valid(text, validator)
            lines.append(line)
        if validator is not None and answers:
            valid = sum(1 for line in lines[-len(answers) :] if line["json_valid"])
            result["json_valid_rate"] = valid / len(answers)
        metrics[version] = result
        emit("eval", version=version, **result)
        log.info("%s: %s", version, result)
        if device == "cuda":
            torch.cuda.empty_cache()

    if config.output_file:
        _write_jsonl_atomic(config.output_file, lines)
    emit("done", outputs={"generations": config.output_file}, metrics=metrics)
    return metrics


def _perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def _write_jsonl_atomic(path: str, lines: list[dict]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
