"""from-gguf: turn a GGUF file into a trainable model directory (safetensors weights, tokenizer, chat template, config).

    python -m tuneloop_trainer from-gguf --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out /models/smollm2-135m-instruct

Many teams have their base only as a GGUF file (an Ollama model's blob, a llama.cpp download) and no hub on the GPU
host. transformers reads GGUF (with the `gguf` package): the tensors are dequantized into float32, the tokenizer and
the chat template are rebuilt from the file's metadata. The result is an ordinary Hugging Face model directory that
train, evaluate, parity and ollama-stage take as `base_model`.

What works is what transformers' GGUF loader supports, for causal language models:
- architectures: llama (and Llama-shaped models such as SmolLM2 and TinyLlama), mistral, qwen2, qwen2_moe, qwen3,
  qwen3_moe, phi3, gemma2, gemma3, gemma4, falcon, bloom, gpt2, starcoder2, stablelm, nemotron, deci, lfm2, mamba,
  gpt_oss, minimax_m2 (the exact list: transformers' GGUF_SUPPORTED_ARCHITECTURES; encoder-decoders such as t5 are
  refused: they are not chat models);
- tensor types: F32, F16, BF16 and every type `gguf` can dequantize: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, the K-quants
  (Q2_K … Q6_K), the I-quants (IQ1_S … IQ4_XS), TQ1_0, TQ2_0, MXFP4, NVFP4.
Anything else — another architecture, another tensor type, a file that is not GGUF or is cut short — is refused with
exit 2 naming what is wrong, before anything is written.

The conversion is checked before it is kept: the directory is loaded back and its next-token logits on a few chat
prompts must equal the GGUF load's (largest absolute difference at most --tolerance, 1e-4 by default; both are the same
float32 numbers, so it is 0 unless something is lost on the way), and both tokenizers must give the same ids. The
directory appears whole or not at all (built next to --out, renamed into place; a build a killed conversion left
behind is removed by the next one). Re-running into a directory made
from the same file (its sha256 is recorded in `tuneloop_gguf.json`) does nothing; any other non-empty --out is
refused.

The tokenizer follows the GGUF's pre-tokenizer (`tokenizer.ggml.pre`: smollm, gpt-2, llama-bpe and qwen2 are
reproduced; transformers' loader would pre-tokenize them all byte-level, and SmolLM2 splits digits one by one). A
serving copy of the GGUF goes beside the weights (serve.gguf: the same metadata, the tensors dequantized to float16):
ollama-stage serves it as the base, so Ollama tokenizes as llama.cpp does for the file and computes with the
numbers the trainer trains on, rounded to float16 as any import would.

Prints one `done` line: {"outputs": {"model_dir"}, "metrics": {"parameters", "architecture", "tensor_types",
"pre_tokenizer", "max_logit_diff", "source_sha256"}}.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from .atomic_dir import build_into, read_marker
from .checkpoint import sha256_file
from .protocol import BadInput, ErrorType, emit

log = logging.getLogger("tuneloop_trainer.from_gguf")

MARKER_FILE = "tuneloop_gguf.json"
# What Ollama serves as the base (ollama-stage): the GGUF's own metadata (tokenizer, pre-tokenizer, BOS, chat
# template) with its tensors dequantized — float16 matrices, float32 vectors, as Ollama's import of safetensors would
# have them. The quantized original would be computed with activations quantized too, further from the numbers the
# trainer trains on than float16 rounding; Ollama's own conversion of safetensors would pre-tokenize every
# Llama-architecture model the Llama 3 way.
SERVING_FILE = "serve.gguf"

# llama.cpp's pre-tokenizers (the GGUF's `tokenizer.ggml.pre`) as transformers pre-tokenizers. transformers' GGUF
# loader builds a plain byte-level one for every BPE vocabulary; models pre-tokenized otherwise would tokenize
# differently from the GGUF (SmolLM splits digits one by one). Each entry reproduces llama-vocab.cpp's regexes.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
_BYTE_LEVEL_ONLY = {**_BYTE_LEVEL, "use_regex": False}
PRE_TOKENIZERS: dict[str, dict] = {
    "gpt-2": _BYTE_LEVEL,
    "smollm": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
    "llama-bpe": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False}, _BYTE_LEVEL_ONLY]},
    "qwen2": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _QWEN2_SPLIT}, "behavior": "Isolated", "invert": False}, _BYTE_LEVEL_ONLY]},
}  # fmt: skip
_FORMAT_VERSION = 2  # 2: the GGUF's pre-tokenizer, and serve.gguf
# Encoder-decoders: transformers reads them from GGUF, but they are not chat models the loop can train.
_NOT_CAUSAL = {"t5", "umt5"}
CHECK_PROMPTS = [
    [{"role": "user", "content": "How many push-ups should a beginner do? I'm 34 and do 1200 m a day."}],
    [{"role": "system", "content": "You are a friendly tutor."}, {"role": "user", "content": "What is 7 x 8?"}],
    [{"role": "user", "content": "Write one sentence about the sea, in French."}],
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gguf", required=True, help="the GGUF file")
    parser.add_argument("--out", required=True, help="directory to create (must not exist, or be empty)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="largest absolute next-token logit difference allowed between the GGUF load and the result (1e-4)",
    )


def main(args: argparse.Namespace) -> int:
    result = from_gguf(args.gguf, args.out, tolerance=args.tolerance)
    emit("done", outputs={"model_dir": result["model_dir"]}, metrics={k: v for k, v in result.items() if k != "model_dir"})
    return 0


def inspect_gguf(path: str) -> dict[str, Any]:
    """The file's architecture and tensor types, read from its header (no weights are loaded). Raises BadInput for a
    missing, corrupt or unsupported file."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"{path} does not exist", field="--gguf", type=ErrorType.MODEL_INVALID)
    with open(p, "rb") as f:
        if f.read(4) != b"GGUF":
            raise BadInput(f"{path} is not a GGUF file (no GGUF magic)", field="--gguf", type=ErrorType.MODEL_INVALID)
    from gguf import GGMLQuantizationType, GGUFReader
    from gguf.quants import _type_traits  # the types gguf can dequantize (F32 and F16 are read as they are)
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = GGUFReader(str(p))
    except Exception as err:  # noqa: BLE001 - a cut-short or corrupt file fails inside the reader in many ways
        raise BadInput(f"{path} is not a readable GGUF file: {err}", field="--gguf", type=ErrorType.MODEL_INVALID) from err
    field = reader.fields.get("general.architecture")
    if field is None:
        raise BadInput(f"{path} names no architecture (general.architecture)", field="--gguf", type=ErrorType.MODEL_INVALID)
    arch = bytes(field.parts[field.data[0]]).decode("utf-8")
    supported = sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer", *_NOT_CAUSAL))
    if arch not in supported:
        raise BadInput(
            f"architecture {arch!r} is not supported (transformers reads these as chat models: {', '.join(supported)})",
            field="--gguf",
            type=ErrorType.MODEL_INVALID,
        )
    readable = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, *_type_traits.keys()}
    types = Counter(t.tensor_type.name for t in reader.tensors)
    unknown = sorted({t.tensor_type.name for t in reader.tensors if t.tensor_type not in readable})
    if unknown:
        raise BadInput(
            f"tensor types {', '.join(unknown)} cannot be dequantized (readable: {', '.join(sorted(q.name for q in readable))})",
            field="--gguf",
            type=ErrorType.MODEL_INVALID,
        )
    if not reader.tensors:
        raise BadInput(f"{path} holds no tensors", field="--gguf", type=ErrorType.MODEL_INVALID)
    pre_field = reader.fields.get("tokenizer.ggml.pre")
    pre = bytes(pre_field.parts[pre_field.data[0]]).decode("utf-8") if pre_field is not None else None
    return {"architecture": arch, "tensor_types": dict(sorted(types.items())), "pre_tokenizer": pre}


def from_gguf(gguf_path: str, out_dir: str, *, tolerance: float = 1e-4) -> dict[str, Any]:
    """Converts, checks and writes; returns {"model_dir", "parameters", "architecture", "tensor_types",
    "max_logit_diff", "source_sha256"}."""
    if not (0 <= tolerance < 1):
        raise BadInput(f"must be in [0, 1), got {tolerance!r}", field="--tolerance")
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out} exists and is not a directory", field="--out")
    if not out.parent.is_dir():
        raise BadInput(f"parent directory {out.parent} does not exist", field="--out")
    info = inspect_gguf(gguf_path)
    source_sha256 = sha256_file(gguf_path)
    recipe = {"format": _FORMAT_VERSION, "source_sha256": source_sha256}
    if out.exists():
        if any(out.iterdir()):
            marker = read_marker(out, MARKER_FILE)
            if marker and all(marker.get(k) == v for k, v in recipe.items()):
                log.info("%s already holds the model converted from this file; nothing to do", out)
                return {"model_dir": str(out), **{k: marker[k] for k in marker if k not in ("format",)}}
            raise BadInput(f"{out} is not empty and was not made from this file; choose a new directory", field="--out")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = Path(gguf_path).absolute()
    with build_into(out) as tmp:
        log.info("reading %s (%s; %s)", src, info["architecture"], info["tensor_types"])
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
            model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        except Exception as err:  # noqa: BLE001 - a header that reads but a model that does not: missing keys, shapes
            raise BadInput(f"transformers cannot load {src} as a model: {type(err).__name__}: {err}", field="--gguf",
                           type=ErrorType.MODEL_INVALID) from err  # fmt: skip
        model.eval()
        pre = info["pre_tokenizer"]
        if pre in PRE_TOKENIZERS:
            tokenizer.backend_tokenizer.pre_tokenizer = _pre_tokenizer(pre)
        elif pre is not None:
            log.warning("pre-tokenizer %r: transformers' own kept (the register stage's parity check shows a difference)", pre)
        if not tokenizer.chat_template:
            raise BadInput(f"{src} carries no chat template (tokenizer.chat_template)", field="--gguf",
                           type=ErrorType.MODEL_INVALID)  # fmt: skip

        # Loaded from GGUF, the model is marked as quantized and transformers refuses to save it; its weights are
        # plain float32 tensors by now, so the mark is dropped.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        max_diff = _check(model, tokenizer, tmp, tolerance)
        write_serving_gguf(src, tmp / SERVING_FILE)
        parameters = sum(p.numel() for p in model.parameters())
        marker = {**recipe, **info, "parameters": parameters, "max_logit_diff": max_diff, "source": src.name,
                  "serving_file": SERVING_FILE, "serving_sha256": sha256_file(str(tmp / SERVING_FILE))}  # fmt: skip
        (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("%s written (%d parameters; largest logit difference %.3g)", out, parameters, max_diff)
    return {"model_dir": str(out), "parameters": parameters, **info, "max_logit_diff": max_diff,
            "source_sha256": source_sha256}  # fmt: skip


def write_serving_gguf(src: Path, dst: Path) -> None:
    """`src` with every tensor dequantized (float16 matrices, float32 vectors) and every metadata key kept."""
    import numpy as np
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    from gguf.quants import dequantize

    reader = GGUFReader(str(src))
    writer = GGUFWriter(str(dst), reader.fields["general.architecture"].contents())
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.quantization_version"):
            continue  # written by the writer itself; no quantization left to version
        if name == "general.file_type":
            writer.add_key_value(name, 1, GGUFValueType.UINT32)  # LLAMA_FTYPE_MOSTLY_F16
        elif f.types[0] == GGUFValueType.ARRAY:
            writer.add_key_value(name, f.contents(), f.types[0], sub_type=f.types[-1])
        else:
            writer.add_key_value(name, f.contents(), f.types[0])
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type)
        writer.add_tensor(t.name, values.astype(np.float16 if values.ndim >= 2 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _pre_tokenizer(name: str) -> Any:
    from tokenizers import Tokenizer

    # A pre-tokenizer is built from its JSON form the way tokenizer.json is read: through a tokenizer holding it.
    holder = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
              "pre_tokenizer": PRE_TOKENIZERS[name], "post_processor": None, "decoder": None,
              "model": {"type": "BPE", "vocab": {}, "merges": []}}  # fmt: skip
    return Tokenizer.from_str(json.dumps(holder)).pre_tokenizer


def _check(model: Any, tokenizer: Any, saved: Path, tolerance: float) -> float:
    """Loads the saved directory back: same token ids from both tokenizers, next-token logits within `tolerance`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    again = AutoModelForCausalLM.from_pretrained(str(saved), dtype=torch.float32)
    again.eval()
    tok_again = AutoTokenizer.from_pretrained(str(saved))
    worst = 0.0
    for messages in CHECK_PROMPTS:
        ids = _encode(tokenizer, messages)
        if _encode(tok_again, messages) != ids:
            raise RuntimeError(f"the saved tokenizer encodes {messages!r} differently from the GGUF's")
        with torch.no_grad():
            x = torch.tensor([ids])
            a = model(input_ids=x).logits[0, -1]
            b = again(input_ids=x).logits[0, -1]
        worst = max(worst, float((a - b).abs().max()))
    if worst > tolerance:
        raise RuntimeError(f"the saved model's logits differ from the GGUF load's by {worst:.3g} (> {tolerance})")
    return worst


def _encode(tokenizer: Any, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
