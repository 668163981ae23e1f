"""Atomic, verified training checkpoints.

    from tuneloop_trainer import checkpoint
    path = checkpoint.save_checkpoint("out/checkpoints", 150, model=model, optimizer=opt, scheduler=sched,
                                      trainer_state={"step": 150, ...})
    checkpoint.verify_checkpoint(path)              # raises CorruptCheckpoint("adapter_model.safetensors: sha256 ...")
    newest = checkpoint.latest_verified("out/checkpoints")   # falls back past corrupt ones; None when there is none
    state = checkpoint.load_checkpoint(newest, model, opt, sched)
    checkpoint.prune("out/checkpoints", keep=3)

Layout of one checkpoint (self-contained and position-independent: it can be uploaded, downloaded elsewhere and
resumed from):

    step-00000150/
      adapter_model.safetensors   LoRA weights (peft save_pretrained, safetensors)
      adapter_config.json
      README.md                   written by peft; harmless, listed like every other file
      optimizer.pt                torch.optim state_dict
      scheduler.pt                LR scheduler state_dict
      rng.pt                      python random, numpy, torch CPU and every CUDA device's generator state
      trainer_state.json          step, data position, totals, config fingerprint, loss, tokens, elapsed
      manifest.json               written LAST: {"format", "version", "step", "created",
                                                 "files": {name: {"size", "sha256"}}}

It is written into `step-XXXXXXXX.tmp-<pid>`, every file fsynced, the manifest last, then renamed into place and
the parent directory fsynced. A directory without a complete, matching manifest is not a checkpoint. The .pt
files hold only tensors and plain values, so they load with torch.load(weights_only=True).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import random
import re
import shutil
from typing import Any

log = logging.getLogger("tuneloop_trainer.checkpoint")

MANIFEST = "manifest.json"
FORMAT = "tuneloop-checkpoint"
VERSION = 1
REQUIRED_FILES = (
    "adapter_model.safetensors",
    "adapter_config.json",
    "optimizer.pt",
    "scheduler.pt",
    "rng.pt",
    "trainer_state.json",
)
_STEP_DIR = re.compile(r"^step-(\d{8,})$")
_TMP_DIR = re.compile(r"^step-\d{8,}\.(?:tmp|old)-(\d+)$")


class CorruptCheckpoint(Exception):
    """A checkpoint directory that must not be resumed from; the message says why."""


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


# ---------------------------------------------------------------------------------------------------- writing


def save_checkpoint(root: str, step: int, *, model: Any, optimizer: Any, scheduler: Any, trainer_state: dict) -> str:
    """Writes a complete checkpoint of `step` under `root` and returns its final path."""
    import torch

    os.makedirs(root, exist_ok=True)
    final = os.path.join(root, step_dir_name(step))
    tmp = f"{final}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(optimizer.state_dict(), os.path.join(tmp, "optimizer.pt"))
    torch.save(scheduler.state_dict(), os.path.join(tmp, "scheduler.pt"))
    torch.save(capture_rng(), os.path.join(tmp, "rng.pt"))
    _write_json(os.path.join(tmp, "trainer_state.json"), {**trainer_state, "step": step})
    _write_manifest(tmp, step)
    replace_dir(tmp, final)
    return final


def _write_json(path: str, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _list_files(directory: str) -> list[str]:
    out = []
    for base, _dirs, files in os.walk(directory):
        for name in files:
            rel = os.path.relpath(os.path.join(base, name), directory)
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_manifest(directory: str, step: int) -> None:
    files = {}
    for rel in _list_files(directory):
        path = os.path.join(directory, rel)
        _fsync_file(path)
        files[rel] = {"size": os.path.getsize(path), "sha256": sha256_file(path)}
    for sub, _dirs, _files in os.walk(directory):
        _fsync_dir(sub)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }
    partial = os.path.join(directory, MANIFEST + ".partial")
    _write_json(partial, manifest)
    _fsync_file(partial)
    os.replace(partial, os.path.join(directory, MANIFEST))
    _fsync_dir(directory)


def replace_dir(tmp: str, final: str) -> None:
    """Renames directory `tmp` to `final`, replacing what is there, and fsyncs the parent directory."""
    # A directory cannot be renamed over a non-empty one; move a same-step leftover aside first.
    old = None
    if os.path.exists(final):
        old = f"{final}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(os.path.dirname(final))
    if old:
        shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------- reading


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise CorruptCheckpoint(f"{directory}: no {MANIFEST} (incomplete write)")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise CorruptCheckpoint(f"{directory}: unreadable {MANIFEST}: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{directory}: {MANIFEST} is not a {FORMAT} manifest")
    if not isinstance(manifest.get("files"), dict):
        raise CorruptCheckpoint(f"{directory}: {MANIFEST} has no file list")
    if manifest.get("version") != VERSION:
        raise CorruptCheckpoint(f"{directory}: manifest version {manifest.get('version')!r}, expected {VERSION}")
    return manifest


def verify_checkpoint(directory: str) -> None:
    """Raises CorruptCheckpoint unless every file in the manifest is present with its recorded size and sha256."""
    if not os.path.isdir(directory):
        raise CorruptCheckpoint(f"{directory}: not a directory")
    manifest = read_manifest(directory)
    files = manifest["files"]
    for name in REQUIRED_FILES:
        if name not in files:
            raise CorruptCheckpoint(f"{directory}: manifest does not list {name}")
    for rel, meta in files.items():
        _verify_file(directory, rel, meta)


def _verify_file(directory: str, rel: str, meta: Any) -> None:
    path = os.path.join(directory, *rel.split("/"))
    if ".." in rel.split("/") or os.path.isabs(rel):
        raise CorruptCheckpoint(f"{directory}: manifest names a path outside the checkpoint: {rel}")
    if not isinstance(meta, dict) or "size" not in meta or "sha256" not in meta:
        raise CorruptCheckpoint(f"{directory}: manifest entry for {rel} lacks size/sha256")
    if not os.path.isfile(path):
        raise CorruptCheckpoint(f"{directory}: missing file {rel}")
    size = os.path.getsize(path)
    if size != meta["size"]:
        raise CorruptCheckpoint(f"{directory}: {rel}: size {size}, manifest says {meta['size']}")
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        expected = str(meta["sha256"])[:12]
        raise CorruptCheckpoint(f"{directory}: {rel}: sha256 {digest[:12]}…, manifest says {expected}…")


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """(step, path) of every final-named checkpoint directory under root, newest first; not verified."""
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP_DIR.match(name)
        if m and os.path.isdir(os.path.join(root, name)):
            found.append((int(m.group(1)), os.path.join(root, name)))
    return sorted(found, reverse=True)


def remove_stale_temporaries(root: str) -> None:
    """Removes .tmp-/.old- directories left by a writer that is no longer running (or by this process)."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        m = _TMP_DIR.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and _pid_alive(pid):
            continue
        log.info("removing unfinished checkpoint write %s", name)
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def latest_verified(root: str) -> str | None:
    """The newest checkpoint under root that verifies; older ones are tried in turn, each skip logged with why."""
    remove_stale_temporaries(root)
    for _step, path in list_checkpoints(root):
        try:
            verify_checkpoint(path)
        except CorruptCheckpoint as err:
            log.warning("skipping checkpoint: %s", err)
            continue
        return path
    return None


def prune(root: str, keep: int) -> list[str]:
    """Deletes checkpoints older than the newest `keep` verified ones; returns what it deleted. Idempotent.

    Corrupt checkpoints newer than the kept ones are left for inspection (latest_verified skips them); everything
    older than the oldest kept checkpoint goes, corrupt or not.
    """
    if keep < 1:
        raise ValueError("keep must be >= 1")
    remove_stale_temporaries(root)
    kept = 0
    deleted = []
    for _step, path in list_checkpoints(root):
        if kept >= keep:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path)
            continue
        try:
            verify_checkpoint(path)
        except CorruptCheckpoint as err:
            log.warning("not counting corrupt checkpoint towards keep=%d: %s", keep, err)
            continue
        kept += 1
    if deleted:
        _fsync_dir(root)
    return deleted


# ---------------------------------------------------------------------------------------------------- restoring


def read_trainer_state(directory: str) -> dict:
    with open(os.path.join(directory, "trainer_state.json"), encoding="utf-8") as f:
        return json.load(f)


def load_checkpoint(
    directory: str, model: Any, optimizer: Any, scheduler: Any, *, restore_rng: bool = True, verify: bool = True
) -> dict:
    """Restores adapter weights, optimizer, scheduler and (unless told not to) RNG; returns the trainer state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    if verify:
        verify_checkpoint(directory)
    weights = load_file(os.path.join(directory, "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    missing_lora = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing_lora:
        raise CorruptCheckpoint(f"{directory}: adapter lacks {len(missing_lora)} LoRA tensors, e.g. {missing_lora[0]}")
    device = next(p.device for p in model.parameters() if p.requires_grad)
    optimizer_state = torch.load(os.path.join(directory, "optimizer.pt"), map_location=device, weights_only=True)
    optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(torch.load(os.path.join(directory, "scheduler.pt"), weights_only=True))
    if restore_rng:
        restore_rng_state(torch.load(os.path.join(directory, "rng.pt"), weights_only=True))
    return read_trainer_state(directory)


def capture_rng() -> dict:
    """Every generator the training loop draws from (LoRA dropout uses torch's), in a weights_only-loadable form."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count != len(cuda):
            log.warning("checkpoint has RNG state for %d CUDA devices, this host has %d", len(cuda), count)
        for index, rng in enumerate(cuda[:count]):
            torch.cuda.set_rng_state(rng, index)
