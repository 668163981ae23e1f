"""ollama-stage: prepare a base model and a LoRA adapter for `ollama create` (Ollama v0.11.4), exactly.

    python -m tuneloop_trainer ollama-stage --base /models/tiny --adapter runs/r1/adapter --out stage/r1
    python -m tuneloop_trainer ollama-stage --base /models/tiny --adapter A --out S --merge always
    python -m tuneloop_trainer ollama-stage --base /models/tiny --adapter A --out S --template my.gotmpl --stop '<|x|>'

Writes into --out (replaced whole) the few files that must differ from the originals, and `ollama_import.json`, the
plan the driver follows: upload every listed file as a blob ("path": relative to the plan for staged files, absolute
for the base's own; "sha256", "size"), then POST /api/create with

    {"model": "<name>:<version>", "files": {name: "sha256:..."}, "adapters": {name: "sha256:..."} | absent,
     "template": "...", "parameters": {"stop": [...], "repeat_penalty": 1.0}}

What Ollama v0.11.4's importer gets wrong, and what this command does about it:

- BOS. For a tokenizer whose BPE pre-tokenizer Ollama recognises (Llama 3's), llama.cpp adds a BOS token to every
  prompt unless the GGUF says not to, and the converter writes that flag only when `bos_token` names a token. A
  tokenizer that adds no BOS (ChatML models) would silently get one (token 11 for the tiny model). The staged
  tokenizer_config.json says `add_bos_token: false` with `bos_token` set to the eos token, so the GGUF matches.
- rope_theta. transformers 5 writes it inside `rope_parameters`; Ollama reads only the top-level key and otherwise
  assumes 10000 (wrong for Llama 3, Qwen). The staged config.json carries it (and rope_scaling) at the top level.
- LoRA on q_proj/k_proj. convert_llama_adapter.go applies the rotary row permutation to lora_A, reading PEFT's
  [r, in] data as if it were [in, r] and with num_attention_heads for k as well, and leaves lora_B alone; llama.cpp
  needs lora_A untouched and lora_B's rows permuted like the base q/k weights (n_head for q, n_kv_head for k).
  The staged adapter has lora_B permuted and lora_A pre-transformed by the inverse of what the converter will do,
  so that what reaches llama.cpp is right. Pinned to v0.11.4's converter; the register stage's parity check
  (`parity`) proves it on every import.
- The chat template. Ollama takes a Go template, not the model's Jinja one. The template family is recognised by
  tokenising probe conversations both ways (the Jinja template through transformers, the family's Go template as
  Ollama renders it, with Ollama's BOS) and requiring identical token ids; `--template` overrides it (and is then
  only checked by the parity check). Known families: chatml, llama3.
- Greedy parity needs `repeat_penalty: 1.0` (Ollama's default is 1.1); it is set in the model's parameters.
- Pre-tokenization. For a Llama-architecture model converted from safetensors, Ollama tokenizes with Llama 3's
  pre-tokenizer whatever the model's own is (SmolLM2 splits digits one by one). A base made by `from-gguf` is
  served from its GGUF instead (serve.gguf, dequantized to float16), whose metadata tells llama.cpp the right
  pre-tokenizer; the adapter is imported onto it as usual. Merged weights go through the safetensors path.

--merge: "auto" (default) imports the adapter onto the base where Ollama can (llama and gemma2 bases, plain LoRA
on projection modules) and a merged model otherwise; "always" merges; "never" fails when the adapter cannot be
imported. Merged weights are written under --out/merged in safetensors.

Prints one `done` line: {"outputs": {"plan"}, "metrics": {"files", "bytes"}, "method", "family", "reason"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from .atomic_dir import build_into, read_marker
from .checkpoint import sha256_file
from .export import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    check_adapter_dir,
    ollama_adapter_support,
    write_adapter,
    write_merged,
)
from .protocol import BadInput, ErrorType, emit, read_json_object

log = logging.getLogger("tuneloop_trainer.ollama_stage")

PLAN_FILE = "ollama_import.json"
# What Ollama's safetensors converter reads of a model directory (besides the weights).
MODEL_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json")
MERGE_CHOICES = ("auto", "always", "never")

# Go templates, as Ollama renders them (text/template; no escaping), and the stop strings that go with them.
FAMILIES: dict[str, dict[str, Any]] = {
    "chatml": {
        "template": (
            "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
            "<|im_start|>assistant\n"
        ),
        "stop": ["<|im_start|>", "<|im_end|>"],
    },
    "llama3": {
        "template": (
            "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
            "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    },
}


def _render_family(family: str, messages: list[dict], default_system: str | None = None) -> str:
    """What Ollama renders for `messages` with the family's template (and a generation prompt)."""
    if default_system is not None and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": default_system}, *messages]
    if family == "chatml":
        body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return body + "<|im_start|>assistant\n"
    if family == "llama3":
        body = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>" for m in messages)
        return body + "<|start_header_id|>assistant<|end_header_id|>\n\n"
    raise ValueError(family)


def family_template(family: str, default_system: str | None = None) -> str:
    """The family's Go template; with `default_system`, the system turn the model's own template adds to a
    conversation that has none (SmolLM2's "You are a helpful AI assistant named SmolLM…") comes first the same way."""
    template = FAMILIES[family]["template"]
    if default_system is None:
        return template
    literal = _system_turn(family, default_system).replace("{{", '{{ "{{" }}')  # text, never an action
    return '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}' + literal + "{{ end }}" + template


def _system_turn(family: str, content: str) -> str:
    """The family's markup of one system turn, alone (without the generation prompt after it)."""
    turn = _render_family(family, [{"role": "system", "content": content}])
    return turn[: len(turn) - len(_render_family(family, []))]


def _default_system(tokenizer: Any, family: str) -> str | None:
    """The system prompt the model's chat template adds when a conversation has none, if it adds one in `family`'s
    markup (SmolLM2's does); None otherwise."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    if not isinstance(rendered, str):
        return None
    user = _render_family(family, [{"role": "user", "content": "x"}])
    opening, closing = _system_turn(family, "\u0000").split("\u0000")
    if not (rendered.startswith(opening) and rendered.endswith(closing + user)):
        return None
    return rendered[len(opening) : len(rendered) - len(closing + user)] or None


PROBES: list[list[dict]] = [
    [{"role": "system", "content": "You are a coach."}, {"role": "user", "content": "Hi there!"}],
    [{"role": "user", "content": "What is 2+2?"}],
    [
        {"role": "system", "content": "Be brief.\nVery brief."},
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three? {{ .Content }} <b>&amp;</b>"},
    ],
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", required=True, help="base model directory (safetensors, config, tokenizer)")
    parser.add_argument("--adapter", help="LoRA adapter directory; absent: stage the base model alone")
    parser.add_argument("--out", required=True, help="staging directory (replaced whole)")
    parser.add_argument("--merge", default="auto", choices=MERGE_CHOICES, help="adapter import or merged weights")
    parser.add_argument("--template", help="a Go template file for Ollama instead of the recognised family's")
    parser.add_argument("--stop", action="append", help="stop string (repeatable; with --template)")


def main(args: argparse.Namespace) -> int:
    template = None
    if args.template is not None:
        try:
            template = Path(args.template).read_text(encoding="utf-8")
        except OSError as err:
            raise BadInput(f"cannot read {args.template}: {err}", field="--template") from None
        if not template.strip():
            raise BadInput(f"{args.template} is empty", field="--template")
    if args.stop and template is None:
        raise BadInput("--stop goes with --template (a recognised family brings its own)", field="--stop")
    result = stage(args.base, args.adapter, args.out, merge=args.merge, template=template, stop=args.stop)
    emit("done", **result)
    return 0


# ---------------------------------------------------------------------------------------------------------------------


def gguf_source(base: Path) -> Path | None:
    """The serving GGUF from-gguf wrote into a base directory (checked against the sha256 it recorded), or None for
    any other directory."""
    from .from_gguf import MARKER_FILE

    marker = read_marker(base, MARKER_FILE)
    if marker is None:
        return None
    source = base / str(marker.get("serving_file") or "")
    if not marker.get("serving_file") or not source.is_file():
        return None
    if sha256_file(source) != marker.get("serving_sha256"):
        raise BadInput(f"{source} is not the one from-gguf wrote (its sha256 differs)",
                       type=ErrorType.MODEL_INVALID, field="--base")  # fmt: skip
    return source


def _weight_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise BadInput(f"{model_dir} holds no *.safetensors weights (Ollama imports safetensors only)",
                       type=ErrorType.MODEL_INVALID, field="--base")  # fmt: skip
    return files


def ollama_config(config: dict) -> dict:
    """config.json as Ollama v0.11.4 reads it: rope settings at the top level, where transformers 5 nests them."""
    out = dict(config)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict):
        if "rope_theta" in rope and "rope_theta" not in out:
            out["rope_theta"] = rope["rope_theta"]
        if rope.get("rope_type") not in (None, "default") and "rope_scaling" not in out:
            out["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    return out


def ollama_tokenizer_config(tokenizer_config: dict, tokenizer: Any) -> tuple[dict, bool]:
    """(tokenizer_config.json for Ollama, whether Ollama will add a BOS): a tokenizer that adds no BOS must say so
    in a way the converter writes into the GGUF (add_bos_token false, with a bos_token naming a real token)."""
    out = dict(tokenizer_config)
    adds_bos = _adds_bos(tokenizer)
    if not adds_bos:
        out["add_bos_token"] = False
        if not out.get("bos_token"):
            out["bos_token"] = tokenizer.eos_token
    return out, adds_bos


def _adds_bos(tokenizer: Any) -> bool:
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    special = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(special) > len(plain) and special[-len(plain) :] == plain and tokenizer.bos_token_id in special


def recognise_family(tokenizer: Any) -> tuple[str | None, str, str | None]:
    """(family, why, default system prompt): the family whose Go template gives, token for token, what the model's
    chat template gives, with the system turn the model's template adds to a conversation that has none."""
    from .data import encode_prompt

    bos = [tokenizer.bos_token_id] if _adds_bos(tokenizer) else []
    reasons = []
    for family in FAMILIES:
        default = _default_system(tokenizer, family)
        for probe in PROBES:
            want = encode_prompt(tokenizer, probe)
            rendered = _render_family(family, probe, default)
            got = bos + tokenizer(rendered, add_special_tokens=False)["input_ids"]
            if got != want:
                reasons.append(f"{family}: differs on {json.dumps(probe)[:80]}…")
                break
        else:
            extra = f", with its default system prompt {default[:40]!r}…" if default else ""
            return family, f"the chat template renders as {family} on every probe{extra}", default
    return None, "; ".join(reasons), None


def compensate_adapter(weights: dict, n_head: int, n_kv_head: int) -> dict:
    """The adapter tensors to upload so that Ollama v0.11.4's converter produces the right LoRA (module docstring)."""
    import numpy as np

    out = {}
    for name, tensor in weights.items():
        t = tensor
        is_q, is_k = ".self_attn.q_proj." in name, ".self_attn.k_proj." in name
        if is_q or is_k:
            if "lora_A" in name:
                t = unrepack_lora_a(t, n_head)  # the converter uses num_attention_heads for q and k alike
            elif "lora_B" in name:
                t = permute_rows(t, n_head if is_q else n_kv_head)
        out[name] = np.ascontiguousarray(t)
    return out


def permute_rows(w: Any, heads: int) -> Any:
    """The rotary row order llama.cpp expects of q/k weights (the base weights get the same at conversion)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def repack_lora_a(a: Any, heads: int) -> Any:
    """What convert_llama_adapter.go's repack does to a PEFT lora_A of shape [r, in]: it views the data as [in, r],
    permutes the rows of that view as for a q/k weight, and writes the data back under the [r, in] shape."""
    r, n_in = a.shape
    view = a.reshape(n_in, r)
    return permute_rows(view, heads).reshape(r, n_in)


def unrepack_lora_a(a: Any, heads: int) -> Any:
    """The inverse of repack_lora_a: repack_lora_a(unrepack_lora_a(a)) == a."""
    r, n_in = a.shape
    view = a.reshape(n_in, r)
    return view.reshape(heads, n_in // heads // 2, 2, r).swapaxes(1, 2).reshape(n_in, r).reshape(r, n_in)


def stage(base_dir: str, adapter_dir: str | None, out_dir: str, *, merge: str = "auto", template: str | None = None,
          stop: list[str] | None = None) -> dict[str, Any]:  # fmt: skip
    from transformers import AutoTokenizer

    if merge not in MERGE_CHOICES:
        raise BadInput(f"expected one of {', '.join(MERGE_CHOICES)}, got {merge!r}", field="--merge")
    base = Path(base_dir).absolute()
    if not (base / "config.json").is_file():
        raise BadInput(f"{base} is not a model directory (no config.json)", type=ErrorType.MODEL_INVALID,
                       field="--base")  # fmt: skip
    config = read_json_object(base / "config.json", "--base")
    adapter_config = None
    weights_path = None
    if adapter_dir is not None:
        adapter_config, weights_path = check_adapter_dir(adapter_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot load the tokenizer of {base}: {err}", type=ErrorType.MODEL_INVALID,
                       field="--base") from None  # fmt: skip

    family = None
    if template is None:
        family, why, default_system = recognise_family(tokenizer)
        if family is None:
            raise BadInput(
                "the chat template is none Ollama can be given automatically (" + why + "); set the model's "
                "serving.template (a Go template for Ollama) and serving.stop",
                type=ErrorType.MODEL_INVALID,
                field="chat_template",
            )
        template, stop = family_template(family, default_system), list(FAMILIES[family]["stop"])
    method = "base"
    reason = "no adapter: the base model alone"
    if adapter_config is not None:
        importable, reason = ollama_adapter_support(config, adapter_config)
        if merge == "always" or (merge == "auto" and not importable):
            method = "merged"
            reason = "merged weights asked for" if merge == "always" else f"merged weights: {reason}"
        elif not importable:
            raise BadInput(f"Ollama cannot import this adapter: {reason}", type=ErrorType.MODEL_INVALID,
                           field="--adapter")  # fmt: skip
        else:
            method = "adapter"

    out = Path(out_dir).absolute()
    with build_into(out, replace=True) as tmp:

        def entry(path: Path) -> dict:
            # Staged files are named relative to the plan (the folder is renamed into place); the base's by full path.
            where = str(path.relative_to(tmp)) if path.is_relative_to(tmp) else str(path)
            return {"path": where, "sha256": sha256_file(path), "size": path.stat().st_size}

        files: dict[str, dict] = {}
        adapters: dict[str, dict] | None = None
        gguf = gguf_source(base)
        if gguf is not None and method != "merged":
            # A base converted from GGUF (from-gguf) is served from its GGUF: the numbers the trainer dequantized (in
            # float16), and the tokenizer metadata (pre-tokenizer, BOS) llama.cpp reads from it.
            files[gguf.name] = entry(gguf)
            adds_bos = _adds_bos(tokenizer)
        else:
            weights_dir = base
            if method == "merged":
                write_merged(str(base), Path(adapter_dir), tmp / "merged")  # type: ignore[arg-type]
                weights_dir = tmp / "merged"
            for w in _weight_files(weights_dir):
                files[w.name] = entry(w)
            (tmp / "config.json").write_text(json.dumps(ollama_config(config), indent=2) + "\n", encoding="utf-8")
            tok_cfg_path = base / "tokenizer_config.json"
            tok_cfg = read_json_object(tok_cfg_path, "--base") if tok_cfg_path.is_file() else {}
            patched, adds_bos = ollama_tokenizer_config(tok_cfg, tokenizer)
            (tmp / "tokenizer_config.json").write_text(json.dumps(patched, indent=2) + "\n", encoding="utf-8")
            for name in MODEL_SIDE_FILES:
                staged, original = tmp / name, base / name
                path = staged if staged.is_file() else original if original.is_file() else None
                if path is not None:
                    files[name] = entry(path)
            if "tokenizer.json" not in files:
                raise BadInput(f"{base} has no tokenizer.json (Ollama's importer needs it)",
                               type=ErrorType.MODEL_INVALID, field="--base")  # fmt: skip
        if method == "adapter":
            adapter_files = _stage_adapter(weights_path, Path(adapter_dir), config, tmp)  # type: ignore[arg-type]
            adapters = {name: entry(path) for name, path in adapter_files.items()}
        plan = {
            "format": "tuneloop-ollama-import",
            "version": 1,
            "ollama": "0.11.4",
            "method": method,
            "reason": reason,
            "family": family,
            "adds_bos": adds_bos,
            "files": files,
            "adapters": adapters,
            "template": template,
            "parameters": {"stop": list(stop or []), "repeat_penalty": 1.0},
        }
        (tmp / PLAN_FILE).write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    total = sum(e["size"] for g in (files, adapters or {}) for e in g.values())
    log.info("staged %s for Ollama (%s, %s): %d bytes", base, method, family or "custom template", total)
    return {
        "outputs": {"plan": str(out / PLAN_FILE)},
        "metrics": {"files": len(files) + len(adapters or {}), "bytes": total},
        "method": method,
        "family": family,
        "reason": reason,
    }


def _stage_adapter(weights_path: Path, adapter_dir: Path, config: dict, tmp: Path) -> dict[str, Path]:
    import numpy as np
    from safetensors.numpy import load_file, save_file

    plain = tmp / "adapter-plain"
    plain.mkdir()
    write_adapter(weights_path, adapter_dir / ADAPTER_CONFIG, plain)  # .bin → safetensors, checked
    tensors = load_file(str(plain / ADAPTER_WEIGHTS))
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    fixed = compensate_adapter({k: np.asarray(v) for k, v in tensors.items()}, n_head, n_kv)
    adapter = tmp / "adapter"
    adapter.mkdir()
    save_file(fixed, str(adapter / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    shutil.copyfile(plain / ADAPTER_CONFIG, adapter / ADAPTER_CONFIG)
    shutil.rmtree(plain)
    return {name: adapter / name for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS)}
