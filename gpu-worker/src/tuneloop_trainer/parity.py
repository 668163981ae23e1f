"""parity: do Ollama's greedy answers come from the model the trainer knows? The register stage's check.

    python -m tuneloop_trainer parity --config parity.json
    python -m tuneloop_trainer parity --config parity.json --watch-stdin       # stdin EOF counts as SIGTERM

parity.json (read as every command's config is, see config.py: unknown keys are refused, relative paths are
relative to the file's own directory):
    {
      "base_model": "/models/tiny",
      "adapter": "/adapters/r7" | null,
      "cases": [{"id": "v1", "messages": [...ending with a user turn...],
                 "ollama": {"content": "...", "done": true, "done_reason": "stop" | "length" | null,
                            "prompt_tokens": 23}}],
      "max_new_tokens": 24,             # what the driver asked of Ollama (num_predict)
      "logit_tolerance": 0.05,          # see below
      "stop": ["<|im_start|>", "<|im_end|>"],  # the stop strings Ollama was given
      "ollama_weights": "f16",          # what Ollama computes with: "f16" (what our imports make) or "f32"
      "device": "auto", "precision": "auto"     # where the trainer's model runs (see runtime.py): bf16 on CUDA,
    }                                           #   fp32 on CPU; "fp32" is the closer reference where memory allows

For each case, against the trainer's model (base + adapter, in `precision`):
1. Prompt: the prompt must be as many tokens for Ollama (prompt_eval_count) as data.encode_prompt makes it. A
   different chat template, a BOS added on one side only or a missing system turn changes the count.
2. Answer: the trainer's own greedy answer, turned into text exactly as Ollama's runner does it (OllamaDecoder:
   end-of-generation tokens, stop strings, held and dropped partial UTF-8), must equal Ollama's. Ollama computes
   with float16 weights, so where two tokens' logits are within a rounding error of each other it may pick the
   other; so where the greedy path leaves Ollama's answer, a token that stays on it is taken if its logit is within
   `logit_tolerance` of the best, and greedy decoding goes on from there (at most 8 times). A wrong template, wrong
   stop tokens or wrong weights miss by whole units of logit.

In fp32 with `ollama_weights: "f16"` the trainer computes as ggml's F16 matrix products do: every weight matrix
(base and adapter) is rounded to float16 and so is every linear layer's input, with float32 sums. Without that the
rounding Ollama does grows with the size of the weights: on the tiny model with a strong adapter (B ~ N(0, 1.5)),
40 prompts x 3 seeds, near-ties up to 0.13 logit and 6 of 120 cases failed against Ollama v0.11.4; with it, near-ties
up to 0.032 and 1 failed (more than 8 near-ties in 24 tokens). gpu-worker/tests/test_parity_ollama.py keeps that check.

Prints `done` {"metrics": {"cases", "exact", "near_tie", "failed"}, "cases": [{"id", "ok", "how", "reason"?,
"trainer", "ollama", "prompt_tokens": {"trainer", "ollama"}, "position"?, "after"?}]}: `reason` holds no text of the
conversation or the answers (those are `trainer`, `ollama` and `after`). Exit 0 whatever the verdict (the
driver decides); 2 for a bad config; 75 when stopped (SIGTERM, SIGINT, the parent's death; see lifecycle.py).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from typing import Any

from . import lifecycle
from .config import path_field
from .data import encode_prompt, validate_messages
from .protocol import emit
from .runtime import DEVICES, PRECISIONS
from .validate import bad, check_choice, check_int, check_number, check_string, check_strings

log = logging.getLogger("tuneloop_trainer.parity")

OLLAMA_WEIGHTS = ("f16", "f32")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    lifecycle.add_arguments(parser)


def main(args: argparse.Namespace, config: ParityConfig) -> int:
    with lifecycle.supervised(args.watch_stdin, "before the parity check finished"):
        result = check(config)
    emit("done", **result)
    return 0


@dataclass
class ParityConfig:
    base_model: str = path_field("model")
    cases: list[dict]
    adapter: str | None = path_field("adapter", None)
    max_new_tokens: int = 24
    logit_tolerance: float = 0.05
    stop: list = field(default_factory=list)
    ollama_weights: str = "f16"
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_string("base_model", self.base_model)
        check_string("adapter", self.adapter, optional=True)
        check_int("max_new_tokens", self.max_new_tokens, low=1)
        check_number("logit_tolerance", self.logit_tolerance, low=0, high=10)
        check_strings("stop", self.stop, blank_ok=True)
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("ollama_weights", self.ollama_weights, OLLAMA_WEIGHTS)
        if not isinstance(self.cases, list) or not self.cases:
            raise bad("cases", "must be a non-empty list")
        for i, case in enumerate(self.cases):
            where = f"cases[{i}]"
            if not isinstance(case, dict) or not isinstance(case.get("id"), str):
                raise bad(where, 'must be an object with a string "id"')
            validate_messages(case.get("messages"), where, final_role="user")
            answer = case.get("ollama")
            if not isinstance(answer, dict) or not isinstance(answer.get("content"), str):
                raise bad(f"{where}.ollama", 'must be an object with a string "content"')
            if answer.get("prompt_tokens") is not None:
                check_int(f"{where}.ollama.prompt_tokens", answer["prompt_tokens"], low=0)


CONFIG = ParityConfig


def compute_as_f16_ggml(model: Any) -> None:
    """Makes an fp32 model compute as ggml's F16 matrix products do: weight matrices (embeddings, projections, LoRA
    A and B) rounded to float16 in place, and each linear layer's input rounded to float16 on the way in; sums,
    norms and 1-D weights stay float32 (Ollama's converter keeps 1-D tensors F32)."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and param.dtype == torch.float32:
                param.copy_(param.half().float())

    def round_input(_module: Any, args: tuple) -> tuple:
        return (args[0].half().float(), *args[1:])

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(round_input)


class OllamaDecoder:
    """Turns token ids into the text Ollama v0.11.4's llama runner sends (runner/llamarunner/runner.go): a token in
    `eog` ends the answer unseen; other tokens' bytes (special tokens as their text) collect in a pending buffer
    that is held while it ends in an incomplete UTF-8 character or in the start of a stop string, and is otherwise
    flushed with bytes cut from its end until it is valid UTF-8 (which can drop a whole following piece); a stop
    string ends the answer and is cut out."""

    def __init__(self, tokenizer: Any, eog: list[int], stop_strings: list[str]) -> None:
        self.tokenizer = tokenizer
        self.eog = set(eog)
        self.stops = [s.encode("utf-8") for s in stop_strings if s]
        self._bytes: dict[int, bytes] = {}
        self._byte_decoder = _byte_decoder(tokenizer)

    def piece(self, token: int) -> bytes:
        if token not in self._bytes:
            added = self.tokenizer.added_tokens_decoder.get(token)
            if added is not None:
                raw = added.content.encode("utf-8")
            else:
                text = self.tokenizer.convert_ids_to_tokens(token)
                raw = _token_bytes(text, self._byte_decoder, self.tokenizer, token)
            self._bytes[token] = raw
        return self._bytes[token]

    def decode(self, ids: list[int], *, finished: bool = False) -> tuple[str, bool]:
        """(text sent after the tokens `ids`, whether they end the answer). `finished`: generation stopped after
        them (the token limit), so held bytes are flushed too."""
        out = b""
        pending = b""
        for token in ids:
            if token in self.eog:
                return (out + _valid_prefix(pending)).decode("utf-8"), True
            pending += self.piece(token)
            hits = [pending.index(s) for s in self.stops if s in pending]
            if hits:
                return (out + _valid_prefix(pending[: min(hits)])).decode("utf-8"), True
            if _incomplete_utf8(pending) or any(
                pending.endswith(s[:i]) for s in self.stops for i in range(1, len(s) + 1)
            ):
                continue
            out += _valid_prefix(pending)
            pending = b""
        if finished:
            out += _valid_prefix(pending)
        return out.decode("utf-8"), False


def _valid_prefix(data: bytes) -> bytes:
    """flushPending: bytes are cut from the end until what is left is valid UTF-8."""
    while data:
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            data = data[:-1]
    return data


def _incomplete_utf8(data: bytes) -> bool:
    """common.IncompleteUnicode: the last (up to 4) bytes start a multi-byte character that is not finished."""
    for i in range(1, min(4, len(data)) + 1):
        c = data[-i]
        if c & 0xC0 == 0x80:
            continue
        if c & 0xE0 == 0xC0:
            return i < 2
        if c & 0xF0 == 0xE0:
            return i < 3
        if c & 0xF8 == 0xF0:
            return i < 4
        return False
    return False


def _byte_decoder(tokenizer: Any) -> dict[str, int]:
    """Byte-level BPE's alphabet (GPT-2's: printable bytes stand for themselves, the others are shifted up past
    255), reversed: token text → bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in printable}
    shift = 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + shift
            shift += 1
    return {chr(c): b for b, c in chars.items()}


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


def _token_bytes(text: str, byte_decoder: dict[str, int], tokenizer: Any, token: int) -> bytes:
    if text.startswith("<0x") and text.endswith(">") and len(text) == 6:  # sentencepiece byte fallback
        return bytes([int(text[3:5], 16)])
    if _is_byte_level(tokenizer) and all(ch in byte_decoder for ch in text):
        return bytes(byte_decoder[ch] for ch in text)
    return tokenizer.decode([token]).encode("utf-8")


def check(config: ParityConfig) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    from .evaluate import stop_token_ids
    from .model import load_adapter, load_for_inference
    from .runtime import resolve_runtime

    runtime = resolve_runtime(config)
    device = runtime.device
    tokenizer = AutoTokenizer.from_pretrained(config.base_model)
    model = load_for_inference(config.base_model, runtime)
    if config.adapter is not None:
        model = load_adapter(model, None, config.adapter, name="candidate", field="adapter")
        model.eval()
    if config.ollama_weights == "f16" and runtime.precision == "fp32":
        compute_as_f16_ggml(model)
    decoder = OllamaDecoder(tokenizer, stop_token_ids(model, tokenizer), config.stop)
    with torch.inference_mode():
        results = [Case(model, tokenizer, decoder, case, config, device).check() for case in config.cases]
    failed = [r for r in results if not r["ok"]]
    for r in failed:
        log.warning("parity %s: %s", r["id"], r["reason"])
    return {
        "metrics": {
            "cases": len(results),
            "exact": sum(1 for r in results if r["how"] == "exact"),
            "near_tie": sum(1 for r in results if r["how"] == "near_tie"),
            "failed": len(failed),
        },
        "cases": results,
    }


MAX_DEVIATIONS = 8


class Case:
    """One prompt: the trainer's greedy answer, and whether Ollama's answer is one the model could give greedily."""

    def __init__(self, model: Any, tokenizer: Any, decoder: OllamaDecoder, case: dict, config: ParityConfig,
                 device: str) -> None:  # fmt: skip
        self.model, self.tokenizer, self.decoder, self.config, self.device = model, tokenizer, decoder, config, device
        self.case = case
        self.prompt = encode_prompt(tokenizer, case["messages"])
        self.theirs = case["ollama"]["content"]
        # Ollama stopped on its own before a stop token or the limit (its repeat guard): compare what there is.
        self.truncated = case["ollama"].get("done") is False

    def text(self, ids: list[int]) -> tuple[str, bool]:
        finished = len(ids) >= self.config.max_new_tokens
        return self.decoder.decode(ids, finished=finished)

    def agrees(self, ids: list[int]) -> bool:
        """Whether the answer these tokens give is Ollama's (or, if Ollama's was cut short, starts with it)."""
        text, _ = self.text(ids)
        return text == self.theirs or (self.truncated and text.startswith(self.theirs))

    def on_course(self, ids: list[int]) -> bool:
        """Whether the text these tokens have sent so far can still become Ollama's answer."""
        text, ended = self.text(ids)
        if ended or len(ids) >= self.config.max_new_tokens:
            return self.agrees(ids)
        return self.theirs.startswith(text) or (self.truncated and text.startswith(self.theirs))

    def check(self) -> dict[str, Any]:
        answer = self.case["ollama"]
        ours_ids = self.greedy([])
        ours, _ = self.text(ours_ids)
        out: dict[str, Any] = {
            "id": self.case["id"],
            "trainer": ours,
            "ollama": self.theirs,
            "prompt_tokens": {"trainer": len(self.prompt), "ollama": answer.get("prompt_tokens")},
        }
        if answer.get("prompt_tokens") is not None and answer["prompt_tokens"] != len(self.prompt):
            return {**out, "ok": False, "how": "prompt",
                    "reason": f"the prompt is {answer['prompt_tokens']} tokens for Ollama and {len(self.prompt)} for "
                              "the trainer: the chat template or the BOS token differ"}  # fmt: skip
        if self.agrees(ours_ids):
            return {**out, "ok": True, "how": "exact"}
        # Where the greedy path leaves Ollama's answer, take a token that stays on it if its logit is within
        # tolerance of the best one (a float16 near-tie), and go on greedily from there.
        ids = ours_ids
        worst = 0.0
        for _ in range(MAX_DEVIATIONS):
            j = next(k for k in range(len(ids) + 1) if k == len(ids) or not self.on_course(ids[: k + 1]))
            if j == len(ids):
                break  # on course to the end but not equal: cannot happen unless truncated oddly
            logits = self.logits(ids[:j])
            best = float(logits.max())
            order = logits.argsort(descending=True).tolist()
            chosen = None
            for token in order[:50]:
                gap = best - float(logits[token])
                if gap > self.config.logit_tolerance:
                    break
                if token != ids[j] and self.on_course(ids[:j] + [token]):
                    chosen, worst = token, max(worst, gap)
                    break
            if chosen is None:
                shown = self.tokenizer.decode(ids[: j + 1], skip_special_tokens=False)
                # The reason names positions only: text (`after`) stays with the case, which the caller keeps where
                # an erasure reaches it.
                return {**out, "ok": False, "how": "answer", "position": j, "after": shown,
                        "reason": f"Ollama's answer leaves the model's greedy path at token {j}: "
                                  f"no token within {self.config.logit_tolerance} of the best logit continues "
                                  "Ollama's answer"}  # fmt: skip
            ids = ids[:j] + [chosen]
            ids = ids + self.greedy(ids)
            if self.agrees(ids):
                return {**out, "ok": True, "how": "near_tie", "max_gap": round(worst, 6)}
        return {**out, "ok": False, "how": "answer",
                "reason": f"more than {MAX_DEVIATIONS} near-ties would be needed to reach Ollama's answer"}  # fmt: skip

    def logits(self, ids: list[int]) -> Any:
        import torch

        x = torch.tensor([self.prompt + ids], device=self.device)
        return self.model(input_ids=x, use_cache=False).logits[0, -1].float()

    def greedy(self, forced: list[int]) -> list[int]:
        """Greedy tokens after the prompt and `forced`, until a stop token, a stop string or the token limit."""
        import torch

        out: list[int] = []
        ids = torch.tensor([self.prompt + forced], device=self.device)
        past = None
        while len(forced) + len(out) < self.config.max_new_tokens:
            res = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = res.past_key_values
            token = int(res.logits[0, -1].argmax())
            out.append(token)
            if self.decoder.decode(forced + out)[1]:
                break
            ids = torch.tensor([[token]], device=self.device)
        return out
