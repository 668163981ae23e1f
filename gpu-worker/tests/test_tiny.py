"""init-tiny: a loadable, deterministic tiny base model with a ChatML tokenizer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tuneloop_trainer.__main__ import main as cli
from tuneloop_trainer.protocol import EXIT_BAD_INPUT, BadInput
from tuneloop_trainer.init_tiny import IM_END, count_parameters, init_tiny


def _digests(d: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(d).iterdir())}


def test_tiny_model_loads_with_auto_classes_and_speaks_chatml(tiny_model_dir: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerFast

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    gen = GenerationConfig.from_pretrained(tiny_model_dir)

    assert isinstance(tok, PreTrainedTokenizerFast)
    assert model.config.model_type == "llama" and model.config.vocab_size == len(tok)
    assert tok.eos_token == IM_END and gen.eos_token_id == tok.convert_tokens_to_ids(IM_END)
    assert gen.pad_token_id == tok.pad_token_id == tok.convert_tokens_to_ids("<|pad|>")
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids("<|im_start|>") in tok(text)["input_ids"]
    # byte-level BPE: any UTF-8 text round-trips
    assert tok.decode(tok("héllo 😀 wörld")["input_ids"]) == "héllo 😀 wörld"
    assert 500_000 < count_parameters(tiny_model_dir) < 5_000_000


def test_same_inputs_give_the_same_files_and_rerunning_is_a_no_op(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("How are you feeling today?\nI ran five kilometers.\nLet us solve two x plus three.\n" * 20)

    code = cli(["init-tiny", "--out", str(tmp_path / "a"), "--text", str(text), "--seed", "3", "--vocab-size", "400"])
    done = json.loads(capsys.readouterr().out)
    a = done["outputs"]["model_dir"]
    b = init_tiny(str(tmp_path / "b"), [str(text)], seed=3, vocab_size=400)
    before = _digests(a)
    again = init_tiny(a, [str(text)], seed=3, vocab_size=400)

    assert code == 0 and done["event"] == "done" and done["metrics"]["parameters"] == count_parameters(a)
    assert _digests(a) == _digests(b)
    assert again == a and _digests(a) == before
    with pytest.raises(BadInput) as err:
        init_tiny(a, [str(text)], seed=4, vocab_size=400)  # different inputs: refused, not overwritten
    assert err.value.field == "--out"
    assert _digests(a) == before


def test_bad_arguments_fail_with_exit_code_2_naming_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")

    codes = [
        cli(["init-tiny", "--out", str(tmp_path / "x"), "--text", str(tmp_path / "missing.txt")]),
        cli(["init-tiny", "--out", str(occupied)]),
        cli(["init-tiny", "--out", str(tmp_path / "y"), "--vocab-size", "10"]),
    ]
    errors = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    assert codes == [EXIT_BAD_INPUT] * 3
    assert [e["field"] for e in errors] == ["--text", "--out", "--vocab-size"]
    assert all(e["event"] == "error" for e in errors)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert sorted(p.name for p in occupied.iterdir()) == ["notes.txt"]
