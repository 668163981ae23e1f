"""What every bench run shares: the weights (a preset or an architecture, written once with seeded random weights,
or a local model directory) and the synthetic rows, in an Env.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from dataclasses import dataclass

from ..protocol import BadInput, ErrorType
from ..runtime import free_memory
from ..validate import bad
from .config import BenchConfig

log = logging.getLogger("tuneloop_trainer.bench")


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
        raise bad("model", f"cannot make a {spec['arch']} config from the given fields: {err}") from None
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

    from ..data import IGNORE_INDEX, Example

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
    from ..data import IGNORE_INDEX

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
