"""The validators every command's configuration uses: each raises BadInput naming the field and what was expected.

    from tuneloop_trainer.validate import check_int, check_choice, check_model_dir
    check_int("lora.r", 0, low=1, high=4096)       # BadInput(field="lora.r"): "expected an integer >= 1 and <= 4096"
    check_choice("device", "tpu", ("auto", "cpu", "cuda"))
    check_model_dir("base_model", "/models/tiny")   # a directory holding config.json

Shape checks (the check_* functions before the "paths" section) need nothing but the value and run in a config
dataclass's `__post_init__`. Path checks touch the file system and run where the config is loaded
(config.load_config), never in `__post_init__`, so a config can be built in code for files that come later.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .protocol import BadInput, ErrorType


def bad(field_name: str, message: str, type: str = ErrorType.CONFIG_INVALID) -> BadInput:
    """The BadInput for a bad config field (CONFIG_INVALID unless told otherwise)."""
    return BadInput(message, type=type, field=field_name)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and value == value  # not NaN


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> None:
    expected = f"an integer >= {low}" + (f" and <= {high}" if high is not None else "")
    if not is_int(value) or value < low or (high is not None and value > high):
        raise bad(name, f"expected {expected}, got {value!r}")


def check_number(name: str, value: Any, *, low: float, high: float, low_open: bool = False,
                 high_open: bool = False) -> None:  # fmt: skip
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    ok = is_number(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        raise bad(name, f"expected a number in {lo}{low}, {high}{hi}, got {value!r}")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    # `type(...) is` keeps true from matching 1 and "1" from matching 1.
    if not any(type(value) is type(c) and value == c for c in choices):
        got = json.dumps(value) if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        raise bad(name, f"expected one of {', '.join(json.dumps(c) for c in choices)}, got {got}")


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise bad(name, f"expected true or false, got {value!r}")


def check_string(name: str, value: Any, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str) or not value.strip():
        raise bad(name, f"expected a non-empty string{' or null' if optional else ''}, got {value!r}")


def check_strings(name: str, value: Any, *, non_empty: bool = False, blank_ok: bool = False) -> None:
    """A list of strings, none empty (nor, unless blank_ok, all white space); with non_empty, at least one."""
    ok = isinstance(value, list) and (bool(value) or not non_empty)
    if ok:
        ok = all(isinstance(v, str) and (v if blank_ok else v.strip()) for v in value)
    if not ok:
        what = "a non-empty list of names" if non_empty else "a list of non-empty strings"
        raise bad(name, f"expected {what}, got {value!r}")


# ---------------------------------------------------------------------------------------------------- paths
# Called by config.load_config after relative paths are resolved; each takes an existing path's field name.


def check_file(name: str, path: str) -> None:
    if not os.path.isfile(path):
        raise bad(name, f"no such file: {path}")


def check_dir(name: str, path: str) -> None:
    if not os.path.isdir(path):
        raise bad(name, f"no such directory: {path}")


def check_model_dir(name: str, path: str) -> None:
    """A local Hugging Face model directory; hub ids are not fetched (tuneloop's workers get local directories)."""
    if not os.path.isdir(path):
        raise bad(name, f"no such directory: {path} (a local model directory is expected)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise bad(name, f"{path} has no config.json: not a model directory", ErrorType.MODEL_INVALID)


def check_adapter_dir(name: str, path: str) -> None:
    """A PEFT adapter directory: adapter_config.json and the weights."""
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise bad(name, f"{path} has no adapter_config.json: not a PEFT adapter directory")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("adapter_model.safetensors", "adapter_model.bin")):
        raise bad(name, f"{path} holds no adapter_model.safetensors or adapter_model.bin")


def check_output_dir(name: str, path: str) -> None:
    """A directory to write into: it may not exist yet, but must not be something else."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise bad(name, f"{path} exists and is not a directory")


def check_output_file(name: str, path: str) -> None:
    """A file to write: its directory must exist."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise bad(name, f"directory {parent} does not exist")
    if os.path.isdir(path):
        raise bad(name, f"{path} is a directory")


PATH_CHECKS = {
    "file": check_file,
    "dir": check_dir,
    "model": check_model_dir,
    "adapter": check_adapter_dir,
    "output_dir": check_output_dir,
    "output_file": check_output_file,
}
