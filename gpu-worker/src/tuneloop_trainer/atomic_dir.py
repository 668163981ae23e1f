"""Directories that appear whole or not at all: what init-tiny, from-gguf, export and ollama-stage make.

    with build_into(out) as tmp:                 # `.<name>.tmp-<pid>` beside out
        ...write into tmp...                     # renamed to out when the block ends without an exception;
                                                 # removed otherwise
    with build_into(out, replace=True) as tmp:   # an earlier `out` is replaced (moved aside, then deleted)

A build that a killed process left behind (its pid is gone) is removed by the next build into the same place; a
live process's build is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("tuneloop_trainer.atomic_dir")


@contextmanager
def build_into(out: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yields an empty build directory beside `out` and renames it to `out`, which must not exist or be empty unless
    `replace` is set."""
    remove_stale_builds(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if replace:
            replace_dir(tmp, out)
        else:
            if out.exists():
                out.rmdir()  # empty: callers refuse a non-empty one first
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(new: Path, out: Path) -> None:
    """Puts `new` at `out`; an earlier `out` is moved aside first and put back if the rename fails."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)  # the earlier one back
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_builds(out: Path) -> None:
    """Removes `.<name>.tmp-<pid>` beside `out` for every pid that no longer runs."""
    for tmp in out.parent.glob(f".{out.name}.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            log.info("removing %s, left by an interrupted build", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:
            pass  # another user's live process


def read_marker(out: Path, name: str) -> dict | None:
    """The JSON object a finished build recorded in `out/name`, or None."""
    try:
        value = json.loads((out / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
