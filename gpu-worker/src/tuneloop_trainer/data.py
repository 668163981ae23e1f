"""Training rows: reading, encoding with assistant-only labels, packing and batching.

    from tuneloop_trainer.data import read_rows, encode, pack, collate
    rows = read_rows("train.jsonl")           # a bad line: BadInput(DATASET_INVALID, field="train.jsonl:12")
    examples = [ex for ex in (encode(tokenizer, m, 2048) for m in rows) if ex is not None]
    batch = collate(pack(examples, 2048)[:8], tokenizer.pad_token_id)
    loss = model(**batch, use_cache=False).loss   # use_cache=False matters, see collate()

A row is one JSON object per line, as tuneloop's export writes it:
    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...]}
an optional system message first, then user and assistant turns alternating, ending with an assistant turn.

Labels are -100 everywhere except on the tokens of each assistant turn as the chat template renders it after the
generation prompt: the content and the end-of-turn token (`<|im_end|>` in ChatML), so the model learns what to say
and when to stop. The spans come from the tokenizer's own chat template, not from an assumed format, so any
prefix-stable template works (ChatML, Llama 3, Gemma, Mistral). Text in a message that spells one of the
tokenizer's control tokens (a user typing "<|im_end|>") is encoded as plain text, never as the control token, so
users cannot forge turns in the training data (transformers' `sanitize_control_tokens`, done here with offsets).
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .protocol import BadInput, ErrorType

if TYPE_CHECKING:
    import torch

log = logging.getLogger("tuneloop_trainer.data")

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")

# Private-use code points that wrap control-token text found inside messages while the template renders them.
_MARK_START, _MARK_END = "\ue000", "\ue001"


# ---------------------------------------------------------------------------------------------------------------------
# Reading and validating rows


def read_rows(path: str) -> list[list[dict]]:
    """Reads and validates a JSONL file of training rows; returns each row's messages as [{"role", "content"}, ...].

    Every line must be a JSON object with a valid "messages" list (see validate_messages); blank lines are skipped.
    The first bad line raises BadInput(type=DATASET_INVALID, field="<path>:<line>"); so does a file with no rows.
    """
    rows: list[list[dict]] = []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        rows.append(validate_messages(obj.get("messages"), where, final_role="assistant"))
    if not rows:
        raise BadInput(f"{path} holds no rows", type=ErrorType.DATASET_INVALID, field=path)
    return rows


def iter_jsonl(path: str) -> Iterable[tuple[int, dict]]:
    """Yields (line number, object) for each non-blank line; BadInput on unreadable files and non-object lines."""
    try:
        f = open(path, "rb")  # bytes, so that a bad UTF-8 sequence is reported with its line number
    except FileNotFoundError as err:
        raise BadInput(f"{path} does not exist", type=ErrorType.DATASET_INVALID, field=path) from err
    except OSError as err:
        raise BadInput(f"cannot open {path}: {err}", type=ErrorType.DATASET_INVALID, field=path) from err
    with f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise BadInput(f"not valid UTF-8: {err}", type=ErrorType.DATASET_INVALID, field=where) from err
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise BadInput(f"not valid JSON: {err}", type=ErrorType.DATASET_INVALID, field=where) from err
            if not isinstance(obj, dict):
                raise BadInput(
                    f"expected a JSON object, got {type(obj).__name__}", type=ErrorType.DATASET_INVALID, field=where
                )
            yield lineno, obj


def validate_messages(messages: Any, where: str, *, final_role: str) -> list[dict]:
    """Checks one conversation and returns it as a list of {"role", "content"} dicts.

    Rules: a non-empty list; each item an object with exactly "role" (system, user or assistant) and "content" (a
    non-blank string of valid Unicode); "system" only as the first message; then user and assistant alternate,
    starting with user; the last message has `final_role` ("assistant" for training rows, "user" for prompts).
    Raises BadInput(type=DATASET_INVALID, field=where) naming the message at fault.
    """

    def bad(message: str) -> BadInput:
        return BadInput(message, type=ErrorType.DATASET_INVALID, field=where)

    if messages is None:
        raise bad('missing "messages"')
    if not isinstance(messages, list):
        raise bad(f'"messages" must be a list, got {type(messages).__name__}')
    if not messages:
        raise bad('"messages" is empty')
    out: list[dict] = []
    expected = "user"  # after an optional system message
    for i, msg in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad(f"{at} must be an object, got {type(msg).__name__}")
        extra = sorted(set(msg) - {"role", "content"})
        if extra:
            raise bad(f"{at} has unknown keys {extra}; only role and content are allowed")
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            raise bad(f"{at}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise bad(f"{at}.content must be a string, got {type(content).__name__}")
        if not content.strip():
            raise bad(f"{at}.content is empty")
        try:
            content.encode("utf-8")
        except UnicodeEncodeError as err:
            raise bad(f"{at}.content is not valid Unicode (lone surrogate at {err.start})") from err
        if role == "system":
            if i != 0:
                raise bad(f"{at}: a system message may only come first")
        elif role != expected:
            raise bad(f"{at}.role: expected {expected!r}, got {role!r} (user and assistant turns alternate)")
        else:
            expected = "assistant" if role == "user" else "user"
        out.append({"role": role, "content": content})
    if out[-1]["role"] != final_role:
        raise bad(f"the last message must be {final_role!r}, got {out[-1]['role']!r}")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Encoding


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX (-100) except on assistant tokens, where it equals input_ids


@dataclass
class _TokenizerInfo:
    control_tokens: tuple[str, ...]  # longest first
    prefix_ids: list[int]  # what the tokenizer puts before a text with add_special_tokens=True (bos), if anything


_INFO: weakref.WeakKeyDictionary[Any, _TokenizerInfo] = weakref.WeakKeyDictionary()


def _tokenizer_info(tokenizer: Any) -> _TokenizerInfo:
    try:
        return _INFO[tokenizer]
    except (KeyError, TypeError):
        pass
    if not getattr(tokenizer, "is_fast", False):
        raise BadInput(
            "the tokenizer is not a fast (tokenizers-backed) tokenizer; character offsets are needed to label turns",
            type=ErrorType.MODEL_INVALID,
            field="tokenizer",
        )
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    if not template:
        raise BadInput("the tokenizer has no chat template", type=ErrorType.MODEL_INVALID, field="chat_template")
    control = {
        tok.content
        for tok in tokenizer.added_tokens_decoder.values()
        if tok.content and (tok.special or (tok.content in template and not tok.content.isspace()))
    }
    probe = "a"
    with_special = tokenizer(probe, add_special_tokens=True)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    prefix: list[int] = []
    for k in range(len(with_special) - len(plain) + 1):
        if with_special[k : k + len(plain)] == plain:
            prefix = list(with_special[:k])
            break
    info = _TokenizerInfo(tuple(sorted(control, key=len, reverse=True)), prefix)
    try:
        _INFO[tokenizer] = info
    except TypeError:
        pass
    return info


def _mark(messages: list[dict], control_tokens: tuple[str, ...]) -> list[dict] | None:
    """Wraps control-token text inside message contents in private-use markers; None when there is none (the usual
    case, rendered as is)."""
    if not any(tok in m["content"] for m in messages for tok in control_tokens):
        return None
    out = []
    for m in messages:
        # markers already in the text are dropped, so they cannot be used to forge a marked span
        content = m["content"].replace(_MARK_START, "").replace(_MARK_END, "")
        out.append({**m, "content": _wrap_control_tokens(content, control_tokens)})
    return out


def _wrap_control_tokens(text: str, control_tokens: tuple[str, ...]) -> str:
    pieces: list[str] = []
    i = 0
    while i < len(text):
        for tok in control_tokens:  # longest first, so a token wins over the tokens it contains
            if text.startswith(tok, i):
                pieces.append(_MARK_START + tok + _MARK_END)
                i += len(tok)
                break
        else:
            pieces.append(text[i])
            i += 1
    return "".join(pieces)


def _unmark(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Removes markers; returns the clean text and the spans (in it) of marked control-token text.

    A marker without its partner (a template that split the content) is dropped; its text is then encoded normally.
    """
    if _MARK_START not in text and _MARK_END not in text:
        return text, []
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    open_at: int | None = None
    for ch in text:
        if ch == _MARK_START:
            open_at = pos
        elif ch == _MARK_END:
            if open_at is not None and pos > open_at:
                spans.append((open_at, pos))
            open_at = None
        else:
            out.append(ch)
            pos += 1
    return "".join(out), spans


def _render(tokenizer: Any, messages: list[dict], add_generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as err:  # jinja2 errors, "no chat template" ValueErrors: the model's template, not the row
        raise BadInput(
            f"the chat template failed: {type(err).__name__}: {err}",
            type=ErrorType.MODEL_INVALID,
            field="chat_template",
        ) from err
    if not isinstance(text, str):
        raise BadInput("the chat template did not render a string", type=ErrorType.MODEL_INVALID, field="chat_template")
    return text


def _not_prefix_stable(detail: str) -> BadInput:
    return BadInput(
        "the chat template is not prefix-stable (rendering the first turns of a conversation does not give a prefix "
        f"of rendering all of it), so assistant turns cannot be located: {detail}",
        type=ErrorType.MODEL_INVALID,
        field="chat_template",
    )


def render_with_spans(tokenizer: Any, messages: list[dict]) -> tuple[str, list[tuple[int, int]], list[tuple[int, int]]]:
    """Renders a conversation; returns (text, assistant spans, plain-text spans), spans as [start, end) characters.

    Assistant turn i spans from the end of render(messages[:i], add_generation_prompt=True) to the end of
    render(messages[:i+1]), less trailing newlines the template writes after the end-of-turn token. Plain-text spans
    cover control-token text that came from the messages and must not be encoded as control tokens.
    """
    info = _tokenizer_info(tokenizer)
    marked = _mark(messages, info.control_tokens)
    found = marked is not None
    if marked is None:
        marked = messages

    def render(msgs: list[dict], gen: bool) -> tuple[str, list[tuple[int, int]]]:
        text = _render(tokenizer, msgs, gen)
        return _unmark(text) if found else (text, [])

    full, plain = render(marked, False)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(marked):
        if m["role"] != "assistant":
            continue
        prompt, _ = render(marked[:i], True)
        upto, _ = render(marked[: i + 1], False)
        if not upto.startswith(prompt):
            raise _not_prefix_stable(f"the generation prompt before message {i} is not a prefix of the turn")
        if not full.startswith(upto):
            raise _not_prefix_stable(f"the conversation up to message {i} is not a prefix of the whole")
        start, end = len(prompt), len(upto.rstrip("\r\n"))
        if end > start:
            spans.append((start, end))
    return full, spans, plain


def tokenize_text(
    tokenizer: Any, text: str, plain_spans: Sequence[tuple[int, int]] = ()
) -> tuple[list[int], list[tuple[int, int]]]:
    """Tokenizes a rendered chat: (ids, character offsets).

    The template's own control tokens are encoded as such; text in `plain_spans` as plain text. Nothing is added at
    the end; at the start, the tokens the tokenizer adds with add_special_tokens=True (a bos) are added unless the
    template already wrote them, so a chat starts with exactly one bos whichever the template does. Added tokens get
    the empty offset (0, 0).
    """
    ids, offsets, _ = _tokenize(tokenizer, text, plain_spans)
    return ids, offsets


def _tokenize(
    tokenizer: Any, text: str, plain_spans: Sequence[tuple[int, int]]
) -> tuple[list[int], list[tuple[int, int]], int]:
    info = _tokenizer_info(tokenizer)
    pieces: list[tuple[int, int, bool]] = []
    pos = 0
    for s, e in sorted(plain_spans):
        if s > pos:
            pieces.append((pos, s, False))
        pieces.append((s, e, True))
        pos = e
    if pos < len(text) or not pieces:
        pieces.append((pos, len(text), False))
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    for s, e, as_text in pieces:
        enc = tokenizer(text[s:e], add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=as_text)
        ids.extend(enc["input_ids"])
        offsets.extend((a + s, b + s) for a, b in enc["offset_mapping"])
    prefix = info.prefix_ids
    if prefix and ids[: len(prefix)] != prefix:
        return prefix + ids, [(0, 0)] * len(prefix) + offsets, len(prefix)
    return ids, offsets, 0


def encode(tokenizer: Any, messages: list[dict], max_length: int) -> Example | None:
    """Encodes one conversation with labels on assistant turns only; None if no labeled token fits in max_length.

    A token is labeled when its character span overlaps an assistant span (an empty span, when it lies inside one).
    The sequence is cut to its first max_length tokens.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    text, spans, plain = render_with_spans(tokenizer, messages)
    ids, offsets, n_added = _tokenize(tokenizer, text, plain)
    labels = [IGNORE_INDEX] * len(ids)
    k = 0  # spans and tokens are both in text order
    for t in range(n_added, len(ids)):
        s, e = offsets[t]
        while k < len(spans) and spans[k][1] <= s:
            k += 1
        if k == len(spans):
            break
        a, b = spans[k]
        if (s < b and e > a) if e > s else (a <= s < b):
            labels[t] = ids[t]
    # Nothing predicts a sequence's first token; in a pack it would be predicted from the previous example.
    if labels:
        labels[0] = IGNORE_INDEX
    ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        return None
    return Example(input_ids=ids, labels=labels)


def encode_prompt(tokenizer: Any, messages: list[dict]) -> list[int]:
    """Token ids of a conversation to continue: rendered with add_generation_prompt=True and tokenized exactly as
    encode() does (same bos rule, control-token text in messages kept as plain text)."""
    info = _tokenizer_info(tokenizer)
    marked = _mark(messages, info.control_tokens)
    text = _render(tokenizer, marked if marked is not None else messages, True)
    text, plain = _unmark(text) if marked is not None else (text, [])
    ids, _ = tokenize_text(tokenizer, text, plain)
    return ids


def encode_rows(tokenizer: Any, rows: Iterable[list[dict]], max_length: int) -> tuple[list[Example], int]:
    """Encodes many rows; returns (examples, how many rows were dropped for having no labeled token left)."""
    examples: list[Example] = []
    dropped = 0
    for messages in rows:
        ex = encode(tokenizer, messages, max_length)
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    if dropped:
        log.warning("%d row(s) dropped: no assistant token within max_length=%d", dropped, max_length)
    return examples, dropped


# ---------------------------------------------------------------------------------------------------------------------
# Packing and batching


@dataclass
class Pack:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)  # restart at 0 for every example
    seq_lens: list[int] = field(default_factory=list)


def pack(examples: Sequence[Example], max_length: int) -> list[Pack]:
    """Packs examples, in order, into sequences of at most max_length tokens (next-fit: a new pack when the next
    example does not fit). Position ids restart at 0 for every example: that is what makes transformers' SDPA and
    eager attention keep packed examples apart when no attention_mask is given (see collate)."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
    packs: list[Pack] = []
    current = Pack()
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        if n == 0 or n != len(ex.labels):
            raise ValueError(f"example {i} is empty or its labels do not match its input ids")
        if n > max_length:
            raise ValueError(f"example {i} has {n} tokens, more than max_length={max_length}")
        if current.seq_lens and len(current.input_ids) + n > max_length:
            packs.append(current)
            current = Pack()
        current.input_ids.extend(ex.input_ids)
        current.labels.extend(ex.labels)
        current.position_ids.extend(range(n))
        current.seq_lens.append(n)
    if current.seq_lens:
        packs.append(current)
    return packs


def _positions(item: Example | Pack) -> list[int]:
    return item.position_ids if isinstance(item, Pack) else list(range(len(item.input_ids)))


def collate(items: Sequence[Example | Pack], pad_id: int, *, flatten: bool = False) -> dict[str, torch.Tensor]:
    """Batches packs (or examples) for a forward pass with no attention mask: {input_ids, labels, position_ids}.

    Rows are right-padded to the longest; padding has label -100 and position ids that restart at 0, so it forms a
    segment of its own and never joins a real sequence (it only ever follows real tokens, which causality already
    hides it from). transformers 5.23 derives a block-diagonal causal mask from the position ids (masking_utils.
    find_packed_sequence_indices) for SDPA and eager attention only when attention_mask is None AND there is no
    KV cache: call the model with use_cache=False, or LlamaModel creates a DynamicCache (config.use_cache defaults
    to True) and silently falls back to a plain causal mask across the whole pack.

    flatten=True puts every item in a single row [1, total] with no padding. flash_attention_2 only splits sequences
    by position ids when the batch has one row (modeling_flash_attention_utils._is_packed_sequence), so use it there.
    """
    import torch

    if not items:
        raise ValueError("collate needs at least one item")
    rows = [(list(it.input_ids), list(it.labels), _positions(it)) for it in items]
    if flatten:
        rows = [tuple(sum((list(r[j]) for r in rows), []) for j in range(3))]  # type: ignore[misc]
    width = max(len(r[0]) for r in rows)
    ids, labels, positions = [], [], []
    for r_ids, r_labels, r_pos in rows:
        pad = width - len(r_ids)
        ids.append(r_ids + [pad_id] * pad)
        labels.append(r_labels + [IGNORE_INDEX] * pad)
        positions.append(list(r_pos) + list(range(pad)))
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "position_ids": torch.tensor(positions, dtype=torch.long),
    }


def collate_padded(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Batches unpacked examples with an attention mask (the baseline and evaluation path): right padding,
    {input_ids, labels, attention_mask}; padding has label -100 and mask 0."""
    import torch

    if not examples:
        raise ValueError("collate_padded needs at least one example")
    if any(isinstance(ex, Pack) for ex in examples):
        raise TypeError("collate_padded takes Examples; a Pack needs collate(), whose position ids keep rows apart")
    width = max(len(ex.input_ids) for ex in examples)
    ids, labels, mask = [], [], []
    for ex in examples:
        pad = width - len(ex.input_ids)
        ids.append(list(ex.input_ids) + [pad_id] * pad)
        labels.append(list(ex.labels) + [IGNORE_INDEX] * pad)
        mask.append([1] * len(ex.input_ids) + [0] * pad)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
        "attention_mask": torch.tensor(mask, dtype=torch.long),
    }


def count_tokens(items: Iterable[Example | Pack]) -> int:
    """Real (non-padding) tokens in examples or packs."""
    return sum(len(it.input_ids) for it in items)


def count_labeled(items: Iterable[Example | Pack]) -> int:
    """Tokens the loss is computed on (labels != -100); for a collated batch use (batch["labels"] != -100).sum()."""
    return sum(sum(1 for label in it.labels if label != IGNORE_INDEX) for it in items)
