"""init-tiny: make a tiny Llama-architecture base model with random weights and its own BPE tokenizer, locally.

    python -m tuneloop_trainer init-tiny --out /tmp/tiny-llama
    python -m tuneloop_trainer init-tiny --out /tmp/tiny2 --text chats.txt --text more.txt --seed 7 --vocab-size 4096

The result is an ordinary Hugging Face model directory (config.json, model.safetensors, generation_config.json,
tokenizer.json, tokenizer_config.json, special_tokens_map.json) that `AutoModelForCausalLM.from_pretrained(dir)` and
`AutoTokenizer.from_pretrained(dir)` load. It stands in for a real base model wherever no hub is reachable: tests,
`tuneloop up`, CPU demos. Its answers are noise; its shapes, tokenizer and chat template are real.

- Architecture: Llama, hidden 128, 4 layers, 4 attention heads, 2 key/value heads, intermediate 352, untied
  embeddings, 4096 positions (about 1.3M parameters with the default vocabulary).
- Tokenizer: byte-level BPE trained with `tokenizers` on the --text files (default: a few hundred lines of chat in
  tuneloop's app domains shipped with the package), with Llama 3's pre-tokenizer split, so any UTF-8 text encodes.
  Special tokens: `<|pad|>` (padding), `<|im_start|>`, `<|im_end|>` (end of turn and eos). No bos token.
- Chat template: ChatML, `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message; the generation prompt is
  `<|im_start|>assistant\\n`.

Deterministic: the same text files, seed and vocabulary size give the same files, byte for byte. Re-running into a
directory that already holds the tiny model made from the same inputs does nothing (the inputs are recorded in
`tuneloop_tiny.json`); any other non-empty --out is refused rather than overwritten. The directory appears whole or
not at all: it is built next to --out and renamed into place.

Prints one `done` line: {"outputs": {"model_dir"}, "metrics": {"parameters"}}.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import struct
from importlib import resources
from pathlib import Path

from .atomic_dir import build_into, read_marker
from .protocol import BadInput, ErrorType, emit

log = logging.getLogger("tuneloop_trainer.init_tiny")

PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]  # ids 0, 1, 2 in this order

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Llama 3's split: contractions, letter runs with one leading non-letter, 1-3 digit groups, punctuation, newlines.
_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

ARCHITECTURE = {
    "hidden_size": 128,
    "intermediate_size": 352,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
}

MARKER_FILE = "tuneloop_tiny.json"
MIN_VOCAB, MAX_VOCAB = 384, 65536
_FORMAT_VERSION = 1  # bump when the recipe changes, so an old directory is not mistaken for a new one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="directory to create (must not exist, or be empty)")
    parser.add_argument(
        "--text",
        action="append",
        default=None,
        metavar="FILE",
        help="UTF-8 text file to train the tokenizer on (repeatable; default: the corpus shipped with the package)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=2048,
        help=f"target BPE vocabulary size, {MIN_VOCAB}-{MAX_VOCAB} (default 2048)",
    )


def main(args: argparse.Namespace) -> int:
    model_dir = init_tiny(args.out, args.text, seed=args.seed, vocab_size=args.vocab_size)
    emit("done", outputs={"model_dir": model_dir}, metrics={"parameters": count_parameters(model_dir)})
    return 0


def default_corpus() -> str:
    """Path of the corpus shipped with the package."""
    return str(resources.files("tuneloop_trainer").joinpath("data", "tiny_corpus.txt"))


def init_tiny(out_dir: str, texts: list[str] | None = None, *, seed: int = 0, vocab_size: int = 2048) -> str:
    """Creates the tiny model in `out_dir` and returns its path (as given, made absolute).

    `texts` are paths of UTF-8 text files for the tokenizer (None: the shipped corpus). Raises BadInput for a bad
    argument or an --out that holds something else; returns at once if --out already holds this very model.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadInput(f"must be a non-negative integer, got {seed!r}", field="--seed")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise BadInput(f"must be an integer in {MIN_VOCAB}..{MAX_VOCAB}, got {vocab_size!r}", field="--vocab-size")
    paths = list(texts) if texts else [default_corpus()]
    corpus = [_read_text(p) for p in paths]

    out = Path(out_dir).absolute()
    recipe = {
        "format": _FORMAT_VERSION,
        "seed": seed,
        "vocab_size": vocab_size,
        "texts_sha256": [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in corpus],
    }
    if out.exists():
        if not out.is_dir():
            raise BadInput(f"{out} exists and is not a directory", field="--out")
        if any(out.iterdir()):
            if read_marker(out, MARKER_FILE) == recipe:
                log.info("%s already holds the tiny model made from these inputs; nothing to do", out)
                return str(out)
            raise BadInput(
                f"{out} is not empty and is not the tiny model of these inputs; choose a new directory or remove it",
                field="--out",
            )
    if not out.parent.is_dir():
        raise BadInput(f"parent directory {out.parent} does not exist", field="--out")

    with build_into(out) as tmp:
        _build(tmp, corpus, seed=seed, vocab_size=vocab_size)
        (tmp / MARKER_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("tiny model written to %s", out)
    return str(out)


def count_parameters(model_dir: str) -> int:
    """Parameters in model.safetensors, read from its header (no torch needed)."""
    with open(Path(model_dir) / "model.safetensors", "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= dim
        total += n
    return total


def _read_text(path: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"text file {path} does not exist", field="--text", type=ErrorType.DATASET_INVALID)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read {path} as UTF-8: {err}", field="--text", type=ErrorType.DATASET_INVALID) from err
    if not text.strip():
        raise BadInput(f"text file {path} is empty", field="--text", type=ErrorType.DATASET_INVALID)
    return text



def _train_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=False: a whitespace-only token ("\n\n" inside an answer) keeps a real character span, which
    # data.encode needs to label it.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [line for text in corpus for line in text.splitlines(keepends=True)]
    tok.train_from_iterator(lines, trainer=trainer, length=len(lines))
    for i, token in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(token) != i:
            raise AssertionError(f"special token {token} did not get id {i}")
    return tok


def _build(tmp: Path, corpus: list[str], *, seed: int, vocab_size: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is for log lines; a tiny model saves in milliseconds anyway

    tok = _train_tokenizer(corpus, vocab_size)
    pad_id, eos_id = tok.token_to_id(PAD_TOKEN), tok.token_to_id(IM_END)
    tok.save(str(tmp / "tokenizer.json"), pretty=True)
    _write_json(
        tmp / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": IM_END,
            "pad_token": PAD_TOKEN,
            "unk_token": None,
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": ARCHITECTURE["max_position_embeddings"],
            "padding_side": "right",
            "chat_template": CHAT_TEMPLATE,
        },
    )
    _write_json(
        tmp / "special_tokens_map.json",
        {"eos_token": IM_END, "pad_token": PAD_TOKEN, "additional_special_tokens": [IM_START, IM_END]},
    )

    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        **ARCHITECTURE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(str(tmp))


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
