"""export: adapter and merged model that reproduce base + adapter, an honest Ollama verdict, atomic output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneloop_trainer.__main__ import main as cli
from tuneloop_trainer.export import MARKER_FILE, ollama_adapter_support
from tuneloop_trainer.protocol import EXIT_BAD_INPUT

CHAT = [
    {"role": "user", "content": "Make me a twenty minute workout."},
    {"role": "assistant", "content": "Sure: squats, push ups, plank."},
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[dict]]:
    code = cli(argv)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def logits(model, tokenizer):
    import torch

    ids = tokenizer.apply_chat_template(CHAT, tokenize=False)
    with torch.no_grad():
        return model(**tokenizer(ids, return_tensors="pt")).logits[0]


def test_merged_model_reproduces_base_plus_adapter(
    tiny_model_dir: str, tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    out = tmp_path / "export"

    code, events = run_cli(
        ["export", "--adapter", tiny_adapter_dir, "--out", str(out), "--merge", "--base", tiny_model_dir], capsys
    )

    assert code == 0 and [e["event"] for e in events] == ["done"]
    done = events[0]
    assert done["outputs"] == {"adapter": str(out), "merged": str(out / "merged")}
    assert done["ollama_adapter_import"] is True and done["architecture"] == "LlamaForCausalLM"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    merged_tok = AutoTokenizer.from_pretrained(out / "merged")
    assert merged_tok.chat_template == tok.chat_template and merged_tok.eos_token == tok.eos_token
    assert GenerationConfig.from_pretrained(out / "merged").eos_token_id == tok.eos_token_id
    assert (out / "merged" / "model.safetensors").is_file() and not list((out / "merged").glob("*.bin"))
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapter_dir
    ).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    expected = logits(with_adapter, tok)
    torch.testing.assert_close(logits(merged, merged_tok), expected, atol=1e-4, rtol=0)
    assert not torch.allclose(logits(base, tok), expected, atol=1e-3)  # the adapter does change the model


def test_adapter_only_export_loads_back_with_peft_and_bin_adapters_become_safetensors(
    tiny_model_dir: str, tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    as_bin = tmp_path / "bin-adapter"
    as_bin.mkdir()
    shutil.copyfile(Path(tiny_adapter_dir) / "adapter_config.json", as_bin / "adapter_config.json")
    torch.save(load_file(Path(tiny_adapter_dir) / "adapter_model.safetensors"), as_bin / "adapter_model.bin")

    code_st, events_st = run_cli(["export", "--adapter", tiny_adapter_dir, "--out", str(tmp_path / "a")], capsys)
    code_bin, _ = run_cli(["export", "--adapter", str(as_bin), "--out", str(tmp_path / "b")], capsys)

    assert code_st == code_bin == 0
    assert events_st[0]["outputs"]["merged"] is None
    # the base was found through the adapter's base_model_name_or_path, a local directory here
    assert events_st[0]["ollama_adapter_import"] is True
    for exported in (tmp_path / "a", tmp_path / "b"):
        assert sorted(p.name for p in exported.iterdir()) == [
            "adapter_config.json",
            "adapter_model.safetensors",
            MARKER_FILE,
        ]
    original, converted = (
        load_file(tmp_path / "a" / "adapter_model.safetensors"),
        load_file(tmp_path / "b" / "adapter_model.safetensors"),
    )
    assert original.keys() == converted.keys() and all(torch.equal(original[k], converted[k]) for k in original)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(tmp_path / "b")
    ).eval()
    first = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tiny_adapter_dir).eval()
    torch.testing.assert_close(logits(reloaded, tok), logits(first, tok), atol=0, rtol=0)


def test_exporting_again_replaces_an_earlier_export_but_never_a_foreign_directory(
    tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out, foreign = tmp_path / "export", tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")

    first, _ = run_cli(["export", "--adapter", tiny_adapter_dir, "--out", str(out)], capsys)
    (out / "stale.txt").write_text("left from before")
    second, _ = run_cli(["export", "--adapter", tiny_adapter_dir, "--out", str(out)], capsys)
    refused, events = run_cli(["export", "--adapter", tiny_adapter_dir, "--out", str(foreign)], capsys)

    assert first == second == 0
    assert not (out / "stale.txt").exists() and (out / "adapter_model.safetensors").is_file()
    assert refused == EXIT_BAD_INPUT and events[-1]["field"] == "--out"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directories left behind


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--adapter", "/nonexistent", "--out", "OUT"], "--adapter"),
        (["--adapter", "ADAPTER", "--out", "OUT", "--merge"], "--base"),
        (["--adapter", "ADAPTER", "--out", "OUT", "--merge", "--base", "/nonexistent"], "--base"),
        (["--adapter", "ADAPTER", "--out", "ADAPTER"], "--out"),
    ],
)
def test_bad_arguments_fail_with_exit_code_2_naming_the_flag(
    tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture, argv: list[str], field: str
) -> None:
    argv = [{"ADAPTER": tiny_adapter_dir, "OUT": str(tmp_path / "out")}.get(a, a) for a in argv]

    code, events = run_cli(["export", *argv], capsys)

    assert code == EXIT_BAD_INPUT and [e["event"] for e in events] == ["error"] and events[0]["field"] == field
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("base", "adapter", "ok", "reason"),
    [
        ({"architectures": ["LlamaForCausalLM"]}, {"target_modules": ["q_proj", "v_proj"]}, True, "llama base"),
        ({"architectures": ["Gemma2ForCausalLM"]}, {"target_modules": ["q_proj", "down_proj"]}, True, "gemma2 base"),
        (
            {"architectures": ["Qwen2ForCausalLM"]},
            {"target_modules": ["q_proj"]},
            False,
            "this base is Qwen2ForCausalLM",
        ),
        (None, {"target_modules": ["q_proj"]}, False, "base unknown"),
        ({"architectures": ["LlamaForCausalLM"]}, {"target_modules": ["q_proj"], "use_rslora": True}, False, "rsLoRA"),
        ({"architectures": ["LlamaForCausalLM"]}, {"target_modules": ["q_proj"], "use_dora": True}, False, "DoRA"),
        (
            {"architectures": ["LlamaForCausalLM"]},
            {"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]},
            False,
            "modules_to_save",
        ),
        (
            {"architectures": ["LlamaForCausalLM"]},
            {"target_modules": ["q_proj", "embed_tokens"]},
            False,
            "embed_tokens",
        ),
        ({"architectures": ["LlamaForCausalLM"]}, {"target_modules": "all-linear"}, False, "pattern"),
    ],
)
def test_the_ollama_verdict_names_what_blocks_an_adapter_import(base, adapter, ok: bool, reason: str) -> None:
    importable, why = ollama_adapter_support(base, adapter)

    assert importable is ok and reason in why
