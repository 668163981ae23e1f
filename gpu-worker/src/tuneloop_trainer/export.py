"""export: package a trained LoRA adapter for Ollama, as an adapter and, with --merge, as a merged model.

    python -m tuneloop_trainer export --adapter runs/r1/adapter --out exports/r1
    python -m tuneloop_trainer export --adapter runs/r1/adapter --out exports/r1 --merge --base /models/base

Writes into --out:
    adapter_model.safetensors, adapter_config.json   the adapter (a .bin adapter is converted to safetensors;
                                                     a safetensors one is copied and checked)
    merged/                                          with --merge: base + adapter merged (peft merge_and_unload),
                                                     safetensors, with the base's tokenizer files and generation
                                                     config: a directory `ollama create` can import (FROM ./merged)
    tuneloop_export.json                             what was exported (checksums, base, Ollama verdict)

Ollama imports a safetensors LoRA adapter (Modelfile `FROM <base>` + `ADAPTER <dir>`) only onto some base
architectures (llama and gemma2 in its converter) and only plain LoRA on the attention and MLP projections (no
rsLoRA/DoRA scaling, no modules_to_save, no per-module rank or alpha). The `done` line says whether this adapter
qualifies, {"ollama_adapter_import": true|false, "reason": "..."}; when it does not, register the merged model. The
base's architecture comes from --base, or else from the adapter's base_model_name_or_path when that is a local
directory; with neither, the verdict is false ("base unknown").

--out is built next to itself and renamed into place at the end, so it appears whole or not at all; an existing
--out is replaced only if it is empty or an earlier export (it holds tuneloop_export.json).

Prints one `done` line: {"outputs": {"adapter", "merged"}, "metrics": {"adapter_bytes", "merged_parameters"?},
"ollama_adapter_import", "reason", "architecture"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from .atomic_dir import build_into
from .checkpoint import sha256_file
from .protocol import BadInput, ErrorType, emit, read_json_object

log = logging.getLogger("tuneloop_trainer.export")

MARKER_FILE = "tuneloop_export.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"

# Base architectures (config.json "architectures"[0]) whose LoRA adapters Ollama's converter imports, with the name
# Ollama gives the architecture (convert/convert.go, ConvertAdapter).
OLLAMA_ADAPTER_ARCHITECTURES = {"LlamaForCausalLM": "llama", "Gemma2ForCausalLM": "gemma2"}
# Module names Ollama's adapter converters map onto GGUF tensors.
OLLAMA_ADAPTER_MODULES = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
# Tokenizer and generation files copied from the base next to the merged weights.
BASE_SIDE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "generation_config.json",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--adapter", required=True, help="LoRA adapter directory (adapter_config.json + weights)")
    parser.add_argument("--out", required=True, help="output directory (replaced atomically)")
    parser.add_argument("--merge", action="store_true", help="also write the merged model to OUT/merged (needs --base)")
    parser.add_argument("--base", help="base model directory (needed by --merge; also used for the Ollama check)")


def main(args: argparse.Namespace) -> int:
    result = export_adapter(args.adapter, args.out, merge=args.merge, base_dir=args.base)
    emit("done", **result)
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# Checks (no torch)


def check_adapter_dir(adapter_dir: str) -> tuple[dict, Path]:
    """(adapter config, weights file) of a LoRA adapter directory; BadInput(field="--adapter") otherwise."""
    d = Path(adapter_dir)
    if not d.is_dir():
        raise BadInput(f"{adapter_dir} is not a directory", type=ErrorType.MODEL_INVALID, field="--adapter")
    config = read_json_object(d / ADAPTER_CONFIG, "--adapter")
    if config.get("peft_type") != "LORA":
        raise BadInput(
            f"{d / ADAPTER_CONFIG}: peft_type is {config.get('peft_type')!r}; only LORA adapters are exported",
            type=ErrorType.MODEL_INVALID,
            field="--adapter",
        )
    for name in (ADAPTER_WEIGHTS, "adapter_model.bin"):
        if (d / name).is_file():
            return config, d / name
    raise BadInput(
        f"{adapter_dir} holds no {ADAPTER_WEIGHTS} or adapter_model.bin",
        type=ErrorType.MODEL_INVALID,
        field="--adapter",
    )


def safetensors_header(path: Path) -> dict:
    """The header of a safetensors file, checked against the file's size (no torch needed)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError("shorter than a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise ValueError("header length beyond the end of the file")
        header = json.loads(f.read(n))
    end = max((info["data_offsets"][1] for k, info in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end != size:
        raise ValueError(f"tensor data ends at byte {8 + n + end}, the file has {size}")
    return header


def ollama_adapter_support(base_config: dict | None, adapter_config: dict) -> tuple[bool, str]:
    """Whether Ollama can import this adapter onto this base with `ADAPTER`, and why (not)."""
    if base_config is None:
        return False, "base unknown: pass --base to check the architecture"
    architectures = base_config.get("architectures") or []
    arch = architectures[0] if architectures else None
    if arch not in OLLAMA_ADAPTER_ARCHITECTURES:
        supported = ", ".join(sorted(OLLAMA_ADAPTER_ARCHITECTURES.values()))
        found = arch or base_config.get("model_type")
        return False, f"Ollama imports LoRA adapters only onto {supported} bases; this base is {found}"
    if adapter_config.get("use_rslora"):
        return False, "rsLoRA scaling (alpha/sqrt(r)) is not what Ollama applies (alpha/r)"
    if adapter_config.get("use_dora"):
        return False, "DoRA adapters are not supported by Ollama"
    if adapter_config.get("modules_to_save"):
        return False, f"modules_to_save {adapter_config['modules_to_save']} are full weights, not LoRA"
    if adapter_config.get("rank_pattern") or adapter_config.get("alpha_pattern"):
        return False, "per-module rank or alpha (rank_pattern/alpha_pattern) is not supported by Ollama"
    targets = adapter_config.get("target_modules") or []
    if isinstance(targets, str):
        return False, f"target_modules is a pattern ({targets!r}); Ollama needs named projection modules"
    other = sorted(set(targets) - OLLAMA_ADAPTER_MODULES)
    if other:
        return False, f"LoRA on {other} cannot be imported by Ollama (only attention and MLP projections)"
    return True, f"{OLLAMA_ADAPTER_ARCHITECTURES[arch]} base, plain LoRA on {sorted(targets)}"


def _base_config_for_check(base_dir: str | None, adapter_config: dict) -> tuple[dict | None, str | None]:
    if base_dir is not None:
        return read_json_object(Path(base_dir) / "config.json", "--base"), base_dir
    guess = adapter_config.get("base_model_name_or_path")
    if isinstance(guess, str) and guess and (Path(guess) / "config.json").is_file():
        try:
            return json.loads((Path(guess) / "config.json").read_text(encoding="utf-8")), guess
        except (OSError, ValueError):
            return None, None
    return None, None


def _check_out(out: Path, sources: list[Path]) -> None:
    for src in sources:
        src = src.resolve()
        target = out.resolve() if out.exists() else out
        if target == src or src in target.parents or target in src.parents:
            raise BadInput(f"{out} overlaps {src}; choose a separate directory", field="--out")
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"{out} exists and is not a directory", field="--out")
        if any(out.iterdir()) and not (out / MARKER_FILE).is_file():
            raise BadInput(f"{out} is not empty and is not an earlier export; choose a new directory", field="--out")
    if not out.parent.is_dir():
        raise BadInput(f"parent directory {out.parent} does not exist", field="--out")


# ---------------------------------------------------------------------------------------------------------------------
# Export


def export_adapter(
    adapter_dir: str, out_dir: str, *, merge: bool = False, base_dir: str | None = None
) -> dict[str, Any]:
    """Exports the adapter (and the merged model with merge=True) to out_dir; returns the `done` payload."""
    adapter_config, weights = check_adapter_dir(adapter_dir)
    if merge and base_dir is None:
        raise BadInput("--merge needs --base, the model the adapter was trained on", field="--base")
    if base_dir is not None and not (Path(base_dir) / "config.json").is_file():
        raise BadInput(
            f"{base_dir} is not a model directory (no config.json)", type=ErrorType.MODEL_INVALID, field="--base"
        )
    base_config, base_used = _base_config_for_check(base_dir, adapter_config)
    if merge and base_config and base_config.get("quantization_config"):
        raise BadInput(
            "the base is a quantized checkpoint; merging needs the unquantized weights",
            type=ErrorType.MODEL_INVALID,
            field="--base",
        )
    out = Path(out_dir).absolute()
    _check_out(out, [Path(adapter_dir)] + ([Path(base_dir)] if base_dir else []))
    importable, reason = ollama_adapter_support(base_config, adapter_config)

    with build_into(out, replace=True) as tmp:
        write_adapter(weights, Path(adapter_dir) / ADAPTER_CONFIG, tmp)
        metrics: dict[str, Any] = {"adapter_bytes": (tmp / ADAPTER_WEIGHTS).stat().st_size}
        if merge:
            metrics["merged_parameters"] = write_merged(base_dir, tmp, tmp / "merged")  # type: ignore[arg-type]
        marker = {
            "adapter": str(Path(adapter_dir).absolute()),
            "adapter_sha256": sha256_file(tmp / ADAPTER_WEIGHTS),
            "base": str(Path(base_used).absolute()) if base_used else None,
            "merged": merge,
            "ollama_adapter_import": importable,
            "reason": reason,
        }
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        _readable(tmp)
    log.info("exported %s to %s%s", adapter_dir, out, " (with merged model)" if merge else "")
    architectures = (base_config or {}).get("architectures") or [None]
    return {
        "outputs": {"adapter": str(out), "merged": str(out / "merged") if merge else None},
        "metrics": metrics,
        "ollama_adapter_import": importable,
        "reason": reason,
        "architecture": architectures[0],
    }


def write_adapter(weights: Path, config_path: Path, tmp: Path) -> None:
    """The adapter's weights as a checked safetensors file (a .bin is converted) and its config, into dir `tmp`."""
    target = tmp / ADAPTER_WEIGHTS
    if weights.name == ADAPTER_WEIGHTS:
        shutil.copyfile(weights, target)
        if sha256_file(target) != sha256_file(weights):
            raise OSError(f"copy of {weights} does not match its source")
    else:
        _bin_to_safetensors(weights, target)
    try:
        header = safetensors_header(target)
    except (OSError, ValueError, KeyError) as err:
        raise BadInput(
            f"{weights} is not a valid safetensors file: {err}", type=ErrorType.MODEL_INVALID, field="--adapter"
        ) from err
    names = [k for k in header if k != "__metadata__"]
    if not any("lora_A" in k for k in names) or not any("lora_B" in k for k in names):
        raise BadInput(f"{weights} holds no lora_A/lora_B tensors", type=ErrorType.MODEL_INVALID, field="--adapter")
    shutil.copyfile(config_path, tmp / ADAPTER_CONFIG)


def _bin_to_safetensors(src: Path, dst: Path) -> None:
    import torch
    from safetensors.torch import save_file

    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle and zip errors come in many types
        raise BadInput(f"cannot load {src}: {err}", type=ErrorType.MODEL_INVALID, field="--adapter") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"{src} is not a state dict of tensors", type=ErrorType.MODEL_INVALID, field="--adapter")
    # safetensors refuses shared storage; each tensor gets its own
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(dst), metadata={"format": "pt"})


def write_merged(base_dir: str, adapter_dir: Path, merged_dir: Path) -> int:
    """Base + adapter merged (safetensors, in the base's dtype) with the base's tokenizer and generation files, into
    `merged_dir`; returns the merged model's parameter count."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is for log lines
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")  # keeps the checkpoint's dtype
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as err:
        raise BadInput(
            f"cannot load the adapter onto {base_dir}: {err}", type=ErrorType.MODEL_INVALID, field="--adapter"
        ) from err
    with torch.no_grad():
        merged = model.merge_and_unload(safe_merge=True)  # safe_merge: refuses weights that turn NaN
    merged.save_pretrained(str(merged_dir))
    for name in BASE_SIDE_FILES:
        src = Path(base_dir) / name
        if src.is_file() and not (merged_dir / name).exists():
            shutil.copyfile(src, merged_dir / name)
    if (Path(base_dir) / "generation_config.json").is_file():
        shutil.copyfile(Path(base_dir) / "generation_config.json", merged_dir / "generation_config.json")
    return sum(p.numel() for p in merged.parameters())


def _readable(root: Path) -> None:
    # Some writers create files 0600 (temp file + rename); Ollama's server often runs as another user.
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~umask)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~umask)
