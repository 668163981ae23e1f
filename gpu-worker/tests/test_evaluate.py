"""evaluate: loss/perplexity per version, greedy generations for the judge, config errors before any model load."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tuneloop_trainer.__main__ import main as cli
from tuneloop_trainer.evaluate import greedy_generate, json_valid
from tuneloop_trainer.protocol import EXIT_BAD_INPUT

VALIDATION = [
    {
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How are you feeling today?"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
            {"role": "assistant", "content": "6"},
        ]
    },
]
PROMPTS = [
    {"id": "p1", "messages": [{"role": "user", "content": "Give me a challenge."}]},
    {
        "id": "p2",
        "messages": [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "user", "content": "A water challenge, please, for the whole family."},
        ],
    },
    {"id": "p3", "messages": [{"role": "user", "content": "Hello"}]},
]


def write_jsonl(path: Path, objs: list[dict]) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    return str(path)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[dict]]:
    code = cli(argv)
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "validation_file": write_jsonl(tmp_path / "val.jsonl", VALIDATION),
        "prompts_file": write_jsonl(tmp_path / "prompts.jsonl", PROMPTS),
        "output_file": str(tmp_path / "generations.jsonl"),
    }


def write_config(tmp_path: Path, config: dict) -> str:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return str(path)


def test_evaluate_scores_each_version_and_writes_a_line_per_version_and_prompt(
    tiny_model_dir: str, tiny_adapter_dir: str, files: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop_trainer.data import collate, count_labeled, encode, pack

    schema = {"type": "object", "required": ["title"]}
    config = {"base_model": tiny_model_dir, "versions": {"base": None, "candidate": tiny_adapter_dir}, **files,
              "max_new_tokens": 6, "batch_size": 2, "output_schema": schema}  # fmt: skip

    code, events = run_cli(["evaluate", "--config", write_config(tmp_path, config)], capsys)

    assert code == 0
    assert [e["event"] for e in events if e["event"] != "progress"] == ["start", "eval", "eval", "done"]
    evals = {e["version"]: e for e in events if e["event"] == "eval"}
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [encode(tok, row["messages"], 2048) for row in VALIDATION]
    for e in evals.values():
        assert e["perplexity"] == pytest.approx(math.exp(e["loss"]), rel=1e-9)
        assert e["tokens"] == count_labeled(examples)
        assert 0.0 <= e["json_valid_rate"] <= 1.0
    assert evals["base"]["loss"] != pytest.approx(evals["candidate"]["loss"], abs=1e-4)  # the adapter was applied
    # the base's held-out loss is the training loss of the same rows (same labels, same shift), packed or not
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        train_loss = model(**collate(pack(examples, 2048), tok.pad_token_id), use_cache=False).loss.item()
    assert evals["base"]["loss"] == pytest.approx(train_loss, abs=1e-4)

    lines = [json.loads(line) for line in Path(files["output_file"]).read_text().splitlines()]
    assert [(line["version"], line["id"]) for line in lines] == [
        (v, p["id"]) for v in ("base", "candidate") for p in PROMPTS
    ]
    for line in lines:
        assert set(line) == {"version", "id", "output", "tokens", "json_valid"}
        assert isinstance(line["output"], str) and 0 <= line["tokens"] <= 6
    for version in ("base", "candidate"):
        mine = [line["json_valid"] for line in lines if line["version"] == version]
        assert evals[version]["json_valid_rate"] == sum(mine) / len(mine)
    base_answers = [line["output"] for line in lines if line["version"] == "base"]
    assert base_answers != [line["output"] for line in lines if line["version"] == "candidate"]
    done = events[-1]
    assert done["outputs"] == {"generations": files["output_file"]}
    assert done["metrics"] == {
        v: {k: e[k] for k in e if k not in ("event", "time", "version")} for v, e in evals.items()
    }


def test_without_a_schema_there_is_no_json_validity(
    tiny_model_dir: str, files: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = {"base_model": tiny_model_dir, "versions": {"base": None}, "prompts_file": files["prompts_file"],
              "output_file": files["output_file"], "max_new_tokens": 2}  # fmt: skip

    code, events = run_cli(["evaluate", "--config", write_config(tmp_path, config)], capsys)

    (ev,) = [e for e in events if e["event"] == "eval"]
    assert code == 0 and "json_valid_rate" not in ev and ev["loss"] is None and ev["tokens"] == 0
    assert all(
        set(json.loads(line)) == {"version", "id", "output", "tokens"}
        for line in Path(files["output_file"]).read_text().splitlines()
    )


def test_json_validity_means_parses_and_matches_the_schema() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator({"type": "object", "required": ["title"]})

    assert json_valid(' {"title": "Hydration Hero"}\n', validator)
    assert not json_valid('{"name": "x"}', validator)
    assert not json_valid('Sure! {"title": "x"}', validator)


def test_greedy_answers_stop_at_the_stop_token_and_do_not_depend_on_batching(tiny_model_dir: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tuneloop_trainer.data import encode_prompt

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = [p["messages"] for p in PROMPTS]
    prompt_ids = encode_prompt(tok, prompts[0])
    with torch.no_grad():
        raw = model.generate(
            torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=8, eos_token_id=[], pad_token_id=0
        )
    new = raw[0, len(prompt_ids) :].tolist()

    one_by_one = greedy_generate(model, tok, prompts, 8, batch_size=1)
    batched = greedy_generate(model, tok, prompts, 8, batch_size=3)
    model.generation_config.eos_token_id = new[2]  # make the third token the model says a stop token
    stopped = greedy_generate(model, tok, prompts[:1], 8)

    assert one_by_one[0] == tok.decode(new)
    assert batched == one_by_one
    assert stopped == [tok.decode(new[: new.index(new[2])])]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"base_model": "/nonexistent"}, "base_model"),
        ({"versions": {}}, "versions"),
        ({"versions": {"cand": "/nonexistent"}}, "versions.cand"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"batch_size": "8"}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"output_schema": {"type": "no-such-type"}}, "output_schema"),
        ({"output_file": None}, "output_file"),
        ({"colour": "blue"}, "colour"),
        ({"prompts_file": "PROMPTS_WITHOUT_ID"}, "PROMPTS_WITHOUT_ID:2"),
    ],
)
def test_bad_config_fails_with_exit_code_2_naming_the_field(
    tiny_model_dir: str, files: dict, tmp_path: Path, capsys: pytest.CaptureFixture, change: dict, field: str
) -> None:
    bad_prompts = write_jsonl(tmp_path / "bad-prompts.jsonl", [PROMPTS[0], {"messages": PROMPTS[1]["messages"]}])
    config = {"base_model": tiny_model_dir, "versions": {"base": None}, **files}
    config.update({k: (bad_prompts if v == "PROMPTS_WITHOUT_ID" else v) for k, v in change.items()})
    field = field.replace("PROMPTS_WITHOUT_ID", bad_prompts)

    code, events = run_cli(["evaluate", "--config", write_config(tmp_path, config)], capsys)

    assert code == EXIT_BAD_INPUT
    assert [e["event"] for e in events] == ["error"]  # not even a start line: nothing was loaded
    assert events[0]["field"] == field
    assert not Path(files["output_file"]).exists()


def test_config_and_inputs_are_checked_without_importing_torch(
    files: dict, tmp_path: Path, tiny_model_dir: str
) -> None:
    config = write_config(
        tmp_path,
        {"base_model": tiny_model_dir, "versions": {"base": None}, **files, "output_schema": {"type": "object"}},
    )
    script = (
        "import sys\n"
        "from tuneloop_trainer.config import load_config\n"
        "from tuneloop_trainer.evaluate import EvalConfig, load_inputs\n"
        f"inputs = load_inputs(load_config(EvalConfig, {config!r}))\n"
        "assert len(inputs.rows) == 2 and len(inputs.prompts) == 3\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1] / "src"
    )

    assert result.returncode == 0, result.stderr
