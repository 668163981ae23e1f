"""The trainer's contract with the TypeScript activities that drive it.

stdout carries one JSON object per line and nothing else; human logs go to stderr in one fixed format.
Events (every object has "event" and "time", seconds since the epoch):

  start       {"command", "run_id"?, "step", "total_steps", "resumed_from", "device", ...}
  progress    {"step", "total", "epoch", "loss", "lr", "tokens_per_s", "gpu_mem", "eta_s"}
  checkpoint  {"step", "path", "reason": "steps" | "timer" | "signal" | "final"}
  eval        {"step", "loss", "perplexity", ...}
  done        {"outputs": {...paths}, "metrics": {...}}
  error       {"type": one of ErrorType, "message"}   (the last line before a non-zero exit)

Exit codes separate what a retry can fix from what it cannot:
  0   done
  1   crash (anything unexpected: retry, resuming from the newest checkpoint)
  2   bad input (config, dataset, base model): never retry
  75  interrupted (SIGTERM/SIGINT, the parent's death; lifecycle.py): train wrote a checkpoint of the current step
      first (resume from it); a command stopped before it had anything to save exits at once
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 75


class ErrorType:
    CONFIG_INVALID = "CONFIG_INVALID"
    DATASET_INVALID = "DATASET_INVALID"
    MODEL_INVALID = "MODEL_INVALID"
    CHECKPOINT_INVALID = "CHECKPOINT_INVALID"
    GPU_OOM = "GPU_OOM"
    CRASH = "CRASH"


class BadInput(Exception):
    """Input that no retry can fix. `field` names the config field or `path:line` at fault."""

    def __init__(self, message: str, *, type: str = ErrorType.CONFIG_INVALID, field: str | None = None):
        super().__init__(message)
        self.type = type
        self.field = field


class Interrupted(Exception):
    """A stop (lifecycle.py): raised by the training loop after it has checkpointed, and by any command stopped
    before it had anything to save."""


def read_json_object(path: Path, field: str, kind: str = ErrorType.MODEL_INVALID) -> dict:
    """A JSON file that must hold an object; BadInput naming `field` (of type `kind`) when it does not."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BadInput(f"{path} does not exist", type=kind, field=field) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"cannot read {path} as JSON: {err}", type=kind, field=field) from err
    if not isinstance(value, dict):
        raise BadInput(f"{path} is not a JSON object", type=kind, field=field)
    return value


def clean(value: Any) -> Any:
    """`value` with every non-finite float (nested too) as None: JSON has no NaN/Infinity, and a diverged loss is
    reported as null rather than as an unparseable line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def emit(event: str, **fields: Any) -> None:
    """Writes one protocol line on stdout and flushes it, so the driver sees it at once."""
    line = json.dumps(clean({"event": event, "time": round(time.time(), 3), **fields}), separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # transformers and peft are chatty at INFO; their warnings still come through.
    for name in ("transformers", "peft", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return logging.getLogger("tuneloop_trainer")
