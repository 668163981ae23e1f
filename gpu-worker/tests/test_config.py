"""Training config: defaults, path resolution, and a named BadInput for every bad field, before torch loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tuneloop_trainer.config import DEFAULT_TARGET_MODULES, TrainConfig, config_from_dict, load_config
from tuneloop_trainer.protocol import BadInput, ErrorType


@pytest.fixture()
def files(tmp_path):
    """A fake model directory (config.json is all the config check looks for), data files and an adapter dir."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "val.jsonl").write_text("{}\n")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"")  # what the config check looks for; never loaded here
    (tmp_path / "not-a-model").mkdir()
    return tmp_path


def minimal(files) -> dict:
    return {
        "base_model": str(files / "model"),
        "train_file": str(files / "train.jsonl"),
        "output_dir": str(files / "out"),
    }


def test_minimal_config_gets_the_documented_defaults(files):
    cfg = config_from_dict(TrainConfig, minimal(files))

    assert cfg.method == "lora"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (16, 32, 0.05)
    assert cfg.lora.target_modules == list(DEFAULT_TARGET_MODULES)
    assert (cfg.learning_rate, cfg.lr_scheduler, cfg.warmup_ratio, cfg.epochs) == (2e-4, "cosine", 0.03, 3)
    assert (cfg.effective_batch_size, cfg.micro_batch_size, cfg.grad_accumulation) == (16, 4, 4)
    assert (cfg.max_length, cfg.packing, cfg.gradient_checkpointing) == (2048, True, "auto")
    assert (cfg.attn_implementation, cfg.precision, cfg.device, cfg.seed) == ("auto", "auto", "auto", 0)
    assert (cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes, cfg.keep_checkpoints) == (50, 10, 3)
    assert (cfg.log_every_steps, cfg.eval_at_end, cfg.replay_fraction) == (1, True, 0.2)
    assert cfg.max_steps is None and cfg.validation_file is None and cfg.init_adapter is None and cfg.run_id is None


def test_relative_paths_resolve_against_the_config_files_directory(files):
    relative = {"base_model": "model", "train_file": "train.jsonl", "output_dir": "out"}
    (files / "train.json").write_text(json.dumps(relative))

    cfg = load_config(TrainConfig, str(files / "train.json"))

    assert cfg.base_model == str(files / "model")
    assert cfg.output_dir == str(files / "out")
    assert cfg.adapter_dir == os.path.join(str(files / "out"), "adapter")


BAD_FIELDS = [
    ("lora.r", {"lora": {"r": 0}}, "integer >= 1"),
    ("lora.r", {"lora": {"r": 1.5}}, "integer"),
    ("lora.r", {"lora": {"r": True}}, "integer"),
    ("lora.alpha", {"lora": {"alpha": 0}}, "(0"),
    ("lora.dropout", {"lora": {"dropout": 1.0}}, "[0, 1)"),
    ("lora.dropout", {"lora": {"dropout": -0.1}}, "[0, 1)"),
    ("lora.target_modules", {"lora": {"target_modules": []}}, "non-empty list"),
    ("lora.target_modules", {"lora": {"target_modules": "q_proj"}}, "non-empty list"),
    ("lora.rank", {"lora": {"rank": 8}}, "unknown key: lora.rank"),
    ("lora", {"lora": 8}, "object"),
    ("method", {"method": "full"}, '"lora", "qlora"'),
    ("method", {"method": "qlora", "device": "cpu"}, "qlora needs CUDA (bitsandbytes 4-bit)"),
    ("learning_rate", {"learning_rate": 0}, "(0"),
    ("learning_rate", {"learning_rate": "2e-4"}, "number"),
    ("lr_scheduler", {"lr_scheduler": "step"}, '"cosine", "linear", "constant"'),
    ("warmup_ratio", {"warmup_ratio": 1}, "[0, 1)"),
    ("epochs", {"epochs": 0}, "integer >= 1"),
    ("effective_batch_size", {"effective_batch_size": 0}, "integer >= 1"),
    ("micro_batch_size", {"effective_batch_size": 16, "micro_batch_size": 3}, "must divide effective_batch_size"),
    ("max_length", {"max_length": 4}, "integer >= 8"),
    ("packing", {"packing": "yes"}, "true or false"),
    ("gradient_checkpointing", {"gradient_checkpointing": "on"}, '"auto", true, false'),
    ("gradient_checkpointing", {"gradient_checkpointing": 1}, '"auto", true, false'),
    ("attn_implementation", {"attn_implementation": "flash"}, '"sdpa"'),
    ("precision", {"precision": "fp16"}, '"bf16"'),
    ("device", {"device": "tpu"}, '"cuda"'),
    ("seed", {"seed": -1}, "integer >= 0"),
    ("max_steps", {"max_steps": 0}, "integer >= 1"),
    ("checkpoint_every_steps", {"checkpoint_every_steps": -1}, "integer >= 0"),
    ("checkpoint_every_minutes", {"checkpoint_every_minutes": -5}, "[0"),
    ("keep_checkpoints", {"keep_checkpoints": 0}, "integer >= 1"),
    ("log_every_steps", {"log_every_steps": 0}, "integer >= 1"),
    ("eval_at_end", {"eval_at_end": 1}, "true or false"),
    ("eval_every_steps", {"eval_every_steps": 1.5}, "integer >= 0"),
    ("replay_fraction", {"replay_fraction": 1.5}, "[0, 1]"),
    ("run_id", {"run_id": ""}, "non-empty string"),
    ("base_model", {"base_model": "/nonexistent/model"}, "no such directory"),
    ("train_file", {"train_file": "/nonexistent/train.jsonl"}, "no such file"),
    ("validation_file", {"validation_file": "/nonexistent/val.jsonl"}, "no such file"),
    ("replay_file", {"replay_file": "/nonexistent/old.jsonl"}, "no such file"),
    ("output_dir", {"output_dir": None}, "non-empty string"),
    ("learning_rat", {"learning_rat": 1e-4}, "unknown key: learning_rat"),
]


@pytest.mark.parametrize(("field", "patch", "expected"), BAD_FIELDS, ids=[f"{f}={p}" for f, p, _ in BAD_FIELDS])
def test_each_bad_field_is_named_with_what_was_expected(files, field, patch, expected):
    data = {**minimal(files), **patch}

    with pytest.raises(BadInput) as caught:
        config_from_dict(TrainConfig, data)

    assert caught.value.field == field
    assert caught.value.type == ErrorType.CONFIG_INVALID
    assert expected in str(caught.value)


def test_a_directory_without_config_json_is_not_a_model(files):
    with pytest.raises(BadInput) as caught:
        config_from_dict(TrainConfig, {**minimal(files), "base_model": str(files / "not-a-model")})

    assert (caught.value.field, caught.value.type) == ("base_model", ErrorType.MODEL_INVALID)


def test_init_adapter_must_be_a_peft_adapter_directory(files):
    assert config_from_dict(TrainConfig, {**minimal(files), "init_adapter": str(files / "adapter")}).init_adapter

    with pytest.raises(BadInput) as caught:
        config_from_dict(TrainConfig, {**minimal(files), "init_adapter": str(files / "model")})

    assert caught.value.field == "init_adapter"
    assert "adapter_config.json" in str(caught.value)


def test_every_unknown_key_is_named_and_a_missing_required_key_too(files):
    with pytest.raises(BadInput) as unknown:
        config_from_dict(TrainConfig, {**minimal(files), "lr": 1, "batch": 2})
    data = minimal(files)
    del data["output_dir"]
    with pytest.raises(BadInput) as missing:
        config_from_dict(TrainConfig, data)

    assert "unknown keys: batch, lr" in str(unknown.value)
    assert missing.value.field == "output_dir"


def test_unreadable_or_non_json_or_non_object_config_names_the_config(files):
    (files / "broken.json").write_text('{"base_model": ')
    (files / "list.json").write_text("[]")

    for path, words in [
        (files / "missing.json", "cannot read"),
        (files / "broken.json", "not valid JSON"),
        (files / "list.json", "JSON object"),
    ]:
        with pytest.raises(BadInput) as caught:
            load_config(TrainConfig, str(path))
        assert caught.value.field == "config" and words in str(caught.value)


def test_bad_config_exits_2_with_one_error_line_and_never_imports_torch(files):
    config = files / "train.json"
    config.write_text(json.dumps({**minimal(files), "lora": {"r": -4}}))
    probe = (
        "import json, sys\n"
        "from tuneloop_trainer.__main__ import main\n"
        f"rc = main(['train', '--config', {str(config)!r}])\n"
        "print(json.dumps({'rc': rc, 'torch': 'torch' in sys.modules}), file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(__file__), "..", "src")}

    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    cli = subprocess.run(
        [sys.executable, "-m", "tuneloop_trainer", "train", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip

    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"rc": 2, "torch": False}
    assert cli.returncode == 2
    lines = cli.stdout.splitlines()
    assert len(lines) == 1
    error = json.loads(lines[0])
    assert (error["event"], error["type"], error["field"]) == ("error", "CONFIG_INVALID", "lora.r")
    assert "expected an integer >= 1" in error["message"]
