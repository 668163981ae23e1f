"""ollama-stage and parity, without Ollama: the staged files, the adapter compensation, the template family, the
runner's text decoding and the parity verdicts. (The TypeScript register tests import into a real Ollama.)"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tuneloop_trainer.__main__ import main as cli
from tuneloop_trainer.ollama_stage import (
    FAMILIES,
    PLAN_FILE,
    compensate_adapter,
    ollama_config,
    permute_rows,
    family_template,
    recognise_family,
    repack_lora_a,
    unrepack_lora_a,
)
from tuneloop_trainer.parity import OllamaDecoder, ParityConfig, check
from tuneloop_trainer.protocol import EXIT_BAD_INPUT

pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

PROMPTS = [
    [{"role": "system", "content": "You are a coach."}, {"role": "user", "content": "What for squats on Monday?"}],
    [{"role": "user", "content": "How many sets of lunges?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Plank tips?"}],
]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[dict]]:
    code = cli(argv)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------- staging


def test_staging_the_tiny_model_with_its_adapter_lists_every_file_with_its_checksum_and_fixes_bos_and_rope(
    tiny_model_dir: str, tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "stage"

    code, events = run_cli(
        ["ollama-stage", "--base", tiny_model_dir, "--adapter", tiny_adapter_dir, "--out", str(out)], capsys
    )

    assert code == 0 and events[-1]["event"] == "done"
    assert events[-1]["method"] == "adapter" and events[-1]["family"] == "chatml"
    plan = json.loads((out / PLAN_FILE).read_text())
    assert sorted(plan["files"]) == sorted(
        ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]
    )
    assert sorted(plan["adapters"]) == ["adapter_config.json", "adapter_model.safetensors"]
    for group in ("files", "adapters"):
        for entry in plan[group].values():
            path = Path(entry["path"]) if Path(entry["path"]).is_absolute() else out / entry["path"]
            assert sha256(path) == entry["sha256"] and path.stat().st_size == entry["size"]
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert tok_cfg["add_bos_token"] is False and tok_cfg["bos_token"] == "<|im_end|>"  # the tiny tokenizer adds none
    assert json.loads((out / "config.json").read_text())["rope_theta"] == 10000.0
    assert plan["template"] == FAMILIES["chatml"]["template"]
    assert plan["parameters"] == {"stop": ["<|im_start|>", "<|im_end|>"], "repeat_penalty": 1.0}


def test_the_staged_adapter_is_what_ollamas_converter_turns_into_the_right_lora(
    tiny_model_dir: str, tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from safetensors.numpy import load_file

    out = tmp_path / "stage"
    run_cli(["ollama-stage", "--base", tiny_model_dir, "--adapter", tiny_adapter_dir, "--out", str(out)], capsys)
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    original = load_file(str(Path(tiny_adapter_dir) / "adapter_model.safetensors"))
    staged = load_file(str(out / "adapter" / "adapter_model.safetensors"))

    assert sorted(staged) == sorted(original)
    for name, tensor in original.items():
        if ".q_proj." in name or ".k_proj." in name:
            if "lora_A" in name:
                # what the converter does to the staged lora_A gives back the trained one
                assert np.array_equal(repack_lora_a(staged[name], n_head), tensor)
            else:
                assert np.array_equal(staged[name], permute_rows(tensor, n_head if ".q_proj." in name else n_kv))
        else:
            assert np.array_equal(staged[name], tensor)


def test_repack_and_its_inverse_are_inverse_permutations() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((8, 128)).astype(np.float32)

    assert np.array_equal(repack_lora_a(unrepack_lora_a(a, 4), 4), a)
    assert np.array_equal(unrepack_lora_a(repack_lora_a(a, 4), 4), a)
    assert not np.array_equal(repack_lora_a(a, 4), a)
    assert sorted(repack_lora_a(a, 4).ravel().tolist()) == sorted(a.ravel().tolist())


def test_compensation_leaves_other_modules_alone() -> None:
    w = {"base_model.model.model.layers.0.mlp.up_proj.lora_A.weight": np.arange(12, dtype=np.float32).reshape(2, 6)}

    assert np.array_equal(compensate_adapter(w, 4, 2)[next(iter(w))], next(iter(w.values())))


def test_rope_settings_move_to_the_top_level_where_ollama_reads_them() -> None:
    cfg = {"rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}}

    out = ollama_config(cfg)

    assert out["rope_theta"] == 500000.0
    assert out["rope_scaling"] == {"rope_type": "llama3", "factor": 8.0}


def test_an_adapter_ollama_cannot_import_is_merged_by_default_and_refused_with_merge_never(
    tiny_model_dir: str, tiny_adapter_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes((Path(tiny_adapter_dir) / "adapter_model.safetensors").read_bytes())
    cfg = json.loads((Path(tiny_adapter_dir) / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "use_rslora": True}))

    code, events = run_cli(["ollama-stage", "--base", tiny_model_dir, "--adapter", str(adapter), "--out",
                            str(tmp_path / "a")], capsys)  # fmt: skip
    refused, refusal = run_cli(["ollama-stage", "--base", tiny_model_dir, "--adapter", str(adapter), "--out",
                                str(tmp_path / "b"), "--merge", "never"], capsys)  # fmt: skip

    assert code == 0 and events[-1]["method"] == "merged" and "rsLoRA" in events[-1]["reason"]
    plan = json.loads((tmp_path / "a" / PLAN_FILE).read_text())
    assert plan["adapters"] is None and plan["files"]["model.safetensors"]["path"] == "merged/model.safetensors"
    assert refused == EXIT_BAD_INPUT and refusal[-1]["field"] == "--adapter"
    assert not (tmp_path / "b").exists()


def test_a_chat_template_of_no_known_family_is_refused_naming_the_setting(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    base = tmp_path / "odd"
    shutil.copytree(tiny_model_dir, base)
    cfg = json.loads((base / "tokenizer_config.json").read_text())
    cfg["chat_template"] = (
        "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}### assistant: {% endif %}"
    )
    (base / "tokenizer_config.json").write_text(json.dumps(cfg))

    code, events = run_cli(["ollama-stage", "--base", str(base), "--out", str(tmp_path / "s")], capsys)

    assert code == EXIT_BAD_INPUT
    assert events[-1]["field"] == "chat_template" and "serving.template" in events[-1]["message"]


def test_the_tiny_tokenizer_is_recognised_as_chatml(tiny_model_dir: str) -> None:
    from transformers import AutoTokenizer

    family, why, default_system = recognise_family(AutoTokenizer.from_pretrained(tiny_model_dir))

    assert family == "chatml", why
    assert default_system is None


def test_a_template_that_adds_a_default_system_prompt_is_chatml_with_it(tiny_model_dir: str, tmp_path) -> None:
    # SmolLM2's template: ChatML, with a system turn of its own when the conversation has none.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are {{ helpful }}.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )

    family, why, default_system = recognise_family(tokenizer)
    template = family_template(family, default_system)

    assert (family, default_system) == ("chatml", "You are {{ helpful }}."), why
    # The default turn is literal text in the Go template (its braces escaped), shown only without a system turn.
    assert template.startswith('{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}')
    assert 'You are {{ "{{" }} helpful }}.' in template
    assert template.endswith(FAMILIES["chatml"]["template"])


# ---------------------------------------------------------------------------------------------------- decoding


class FakeTokenizer:
    """Pieces given directly, to pin down the runner's byte handling."""

    added_tokens_decoder: dict = {}

    def __init__(self, pieces: dict[int, bytes]) -> None:
        self.pieces = pieces


def decoder_with(pieces: dict[int, bytes], eog=(0,), stops=("<|im_end|>",)) -> OllamaDecoder:
    d = OllamaDecoder.__new__(OllamaDecoder)
    d.tokenizer = FakeTokenizer(pieces)
    d.eog = set(eog)
    d.stops = [s.encode() for s in stops]
    d._bytes = dict(pieces)
    d._byte_decoder = {}
    return d


def test_decoding_holds_an_incomplete_character_and_sends_it_once_complete() -> None:
    d = decoder_with({1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b"!"})

    assert d.decode([1, 2]) == ("caf", False)
    assert d.decode([1, 2, 3, 4]) == ("café!", False)


def test_decoding_drops_a_broken_character_together_with_the_piece_that_follows_it() -> None:
    # runner.go flushPending cuts bytes off the end until the text is valid: " deep" goes with the stray byte
    d = decoder_with({1: b"usually", 2: b"\xe2", 3: b" deep", 4: b" noun"})

    assert d.decode([1, 2, 3, 4]) == ("usually noun", False)


def test_decoding_stops_at_an_end_of_generation_token_and_at_a_stop_string() -> None:
    d = decoder_with({1: b"Hi", 2: b" there", 3: b"<|im_", 4: b"end|>", 5: b"more"})

    assert d.decode([1, 2, 0, 5]) == ("Hi there", True)
    assert d.decode([1, 3]) == ("Hi", False)  # a stop string's start is held back
    assert d.decode([1, 3, 4, 5]) == ("Hi", True)
    assert d.decode([1, 3], finished=True) == ("Hi<|im_", False)


# ---------------------------------------------------------------------------------------------------- parity


def greedy_answers(model_dir: str, adapter: str | None, max_new: int) -> list[dict]:
    """Cases answered by the model itself, as Ollama would answer them if it were exact."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop_trainer.evaluate import stop_token_ids
    from tuneloop_trainer.model import load_adapter
    from tuneloop_trainer.parity import Case

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if adapter:
        model = load_adapter(model, None, adapter, name="a", field="a").eval()
    cfg = ParityConfig(base_model=model_dir, cases=[{"id": "x", "messages": PROMPTS[0], "ollama": {"content": ""}}],
                       max_new_tokens=max_new, stop=["<|im_start|>", "<|im_end|>"])  # fmt: skip
    decoder = OllamaDecoder(tok, stop_token_ids(model, tok), cfg.stop)
    cases = []
    with torch.inference_mode():
        for i, messages in enumerate(PROMPTS):
            case = Case(model, tok, decoder, {"id": f"p{i}", "messages": messages, "ollama": {"content": ""}}, cfg,
                        "cpu")  # fmt: skip
            ids = case.greedy([])
            text, ended = case.text(ids)
            cases.append({"id": f"p{i}", "messages": messages,
                          "ollama": {"content": text, "done": True, "done_reason": "stop" if ended else "length",
                                     "prompt_tokens": len(case.prompt)}})  # fmt: skip
    return cases


@pytest.fixture(scope="module")
def answered(tiny_model_dir, tiny_adapter_dir):
    return greedy_answers(tiny_model_dir, tiny_adapter_dir, 16)


def parity(tiny_model_dir, tiny_adapter_dir, cases, **kw) -> dict:
    return check(ParityConfig(base_model=tiny_model_dir, adapter=tiny_adapter_dir, cases=cases, max_new_tokens=16,
                              stop=["<|im_start|>", "<|im_end|>"], **kw))  # fmt: skip


def test_answers_that_are_the_models_own_greedy_answers_pass_exactly(tiny_model_dir, tiny_adapter_dir, answered):
    result = parity(tiny_model_dir, tiny_adapter_dir, answered)

    assert result["metrics"] == {"cases": 3, "exact": 3, "near_tie": 0, "failed": 0}


def test_a_prompt_of_another_length_fails_naming_the_template(tiny_model_dir, tiny_adapter_dir, answered):
    cases = [{**answered[0], "ollama": {**answered[0]["ollama"], "prompt_tokens": answered[0]["ollama"]["prompt_tokens"] + 1}}]

    result = parity(tiny_model_dir, tiny_adapter_dir, cases)

    assert result["metrics"]["failed"] == 1
    assert result["cases"][0]["how"] == "prompt" and "chat template" in result["cases"][0]["reason"]


def test_an_answer_off_the_greedy_path_fails_with_both_answers(tiny_model_dir, tiny_adapter_dir, answered):
    case = answered[1]
    cases = [{**case, "ollama": {**case["ollama"], "content": "Completely different words " + case["ollama"]["content"]}}]

    result = parity(tiny_model_dir, tiny_adapter_dir, cases)

    bad = result["cases"][0]
    assert not bad["ok"] and bad["how"] == "answer" and bad["position"] == 0
    assert bad["trainer"] == case["ollama"]["content"] and bad["ollama"].startswith("Completely different")


def test_the_base_models_answers_fail_against_the_adapter(tiny_model_dir, tiny_adapter_dir):
    # What an import that lost (or garbled) the adapter would serve.
    base_answers = greedy_answers(tiny_model_dir, None, 16)

    result = parity(tiny_model_dir, tiny_adapter_dir, base_answers)

    assert result["metrics"]["failed"] >= 2


def test_with_a_wide_tolerance_a_second_best_path_is_accepted_as_a_near_tie(tiny_model_dir, tiny_adapter_dir, answered):
    # The second-best first token, then greedy: an answer float16 rounding could give if the two were close.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop_trainer.evaluate import stop_token_ids
    from tuneloop_trainer.model import load_adapter
    from tuneloop_trainer.parity import Case

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), None, tiny_adapter_dir, name="a",
                         field="a").eval()
    cfg = ParityConfig(base_model=tiny_model_dir, cases=answered, max_new_tokens=16, stop=["<|im_start|>", "<|im_end|>"])
    with torch.inference_mode():
        case = Case(model, tok, OllamaDecoder(tok, stop_token_ids(model, tok), cfg.stop), answered[0], cfg, "cpu")
        second = int(case.logits([]).argsort(descending=True)[1])
        ids = [second] + case.greedy([second])
        text, _ = case.text(ids)
        gap = float(case.logits([]).max() - case.logits([])[second])
    alt = [{**answered[0], "ollama": {**answered[0]["ollama"], "content": text}}]

    strict = parity(tiny_model_dir, tiny_adapter_dir, alt, logit_tolerance=gap / 2)
    wide = parity(tiny_model_dir, tiny_adapter_dir, alt, logit_tolerance=gap * 1.01)

    assert strict["cases"][0]["ok"] is False
    assert wide["cases"][0]["ok"] is True and wide["cases"][0]["how"] == "near_tie"


def test_a_bad_parity_config_names_the_field(tiny_model_dir, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"base_model": tiny_model_dir, "cases": [{"id": "a", "messages": [], "ollama": {}}]}))

    code, events = run_cli(["parity", "--config", str(path)], capsys)

    assert code == EXIT_BAD_INPUT and events[-1]["field"].startswith("cases[0]")
