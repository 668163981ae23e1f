"""The bench command on CPU with the tiny preset: ours and the baseline train on the same tokens, the figures and
their ratio are reported, QLoRA is skipped with a reason, and a bad config fails before anything loads."""

from __future__ import annotations

import contextlib
import io
import json
from types import SimpleNamespace

import pytest

from tuneloop_trainer.__main__ import main as cli
from tuneloop_trainer.protocol import EXIT_BAD_INPUT

TINY_BENCH = {
    "model": "tiny",
    "methods": ["lora", "qlora"],
    "device": "cpu",
    "seq_len": 128,
    "micro_batch_size": 2,
    "steps": 2,
    "warmup_steps": 1,
    "dataset": {"median_tokens": 40, "min_tokens": 8},
    # Dropout off: with the same weights and rows, the two sides' first-step losses must then agree.
    "lora": {"r": 16, "alpha": 32, "dropout": 0.0},
    "matmul_repeats": 2,
}


def run_cli(argv: list[str]) -> tuple[int, list[dict]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(argv)
    return code, [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    config = work / "bench.json"
    config.write_text(json.dumps(TINY_BENCH))
    code, events = run_cli(["bench", "--config", str(config), "--out", str(work / "results.json")])
    results = json.loads((work / "results.json").read_text())
    return SimpleNamespace(code=code, events=events, results=results, path=str(work / "results.json"))


def run_of(results: dict, method: str, side: str) -> dict:
    return next(r for r in results["runs"] if r["method"] == method and r["side"] == side)


def test_ours_and_the_baseline_both_train_lora_and_their_throughput_ratio_is_reported(bench):
    results = bench.results
    ours, baseline = run_of(results, "lora", "ours"), run_of(results, "lora", "baseline")

    assert bench.code == 0 and results["complete"] is True
    for run in (ours, baseline):
        assert run["status"] == "ok"
        assert run["tokens_per_s"] > 0 and run["steps"] == 2 and run["seconds"] > 0
        assert 0 < run["mfu"] and run["mfu_against"] == "measured fp32 matmul peak (cpu)"
        assert run["peak_gpu_mem"] is None  # CPU: no GPU memory to report
    assert results["matmul"]["tflops"] > 0 and results["matmul"]["dtype"] == "fp32"
    ratio = results["comparison"]["lora"]["tokens_per_s_ratio"]
    assert ratio == pytest.approx(ours["tokens_per_s"] / baseline["tokens_per_s"], rel=1e-3)
    assert results["machine"]["torch"] and results["machine"]["transformers"] and results["machine"]["peft"]
    assert results["config"]["model"] == "tiny"


def test_both_sides_see_the_same_tokens_ours_packed_and_the_baseline_padded(bench):
    ours, baseline = run_of(bench.results, "lora", "ours"), run_of(bench.results, "lora", "baseline")

    assert ours["tokens"] == baseline["tokens"] > 0
    assert ours["model_flops"] == baseline["model_flops"]  # the same formula over the same rows
    assert baseline["padded_tokens"] > baseline["tokens"]  # padding to the longest row of each micro-batch
    assert ours["padded_tokens"] >= ours["tokens"]
    # Same weights, same rows, the new adapter a no-op at step 1, dropout off: the same loss. A mismatch would mean
    # the sides trained on different tokens, or that packed rows leaked into each other.
    loss = bench.results["comparison"]["lora"]["first_step_loss"]
    assert loss["ours"] == pytest.approx(loss["baseline"], rel=1e-3)


def test_the_flops_count_uses_the_models_linear_weights(bench):
    ours = run_of(bench.results, "lora", "ours")
    # tiny: 4 layers, hidden 128, 4 heads x 32, 2 kv heads, MLP 352, vocab 2048, untied lm_head
    per_layer = 128 * 128 + 2 * 128 * 64 + 128 * 128 + 3 * 128 * 352
    lora_per_layer = 16 * ((128 + 128) + 2 * (128 + 64) + (128 + 128) + 3 * (128 + 352))

    assert ours["frozen_weights"] == 4 * per_layer + 128 * 2048
    assert ours["lora_weights"] == 4 * lora_per_layer
    assert (ours["layers"], ours["d_attn"]) == (4, 128)
    # per token: 4 per frozen weight + 6 per LoRA weight, plus causal attention
    assert ours["model_flops_per_token"] > 4 * ours["frozen_weights"] + 6 * ours["lora_weights"]


def test_qlora_without_cuda_is_skipped_with_its_reason(bench):
    skipped = bench.results["skipped"]

    assert [s["method"] for s in skipped] == ["qlora"] and "CUDA" in skipped[0]["reason"]
    assert not any(r["method"] == "qlora" for r in bench.results["runs"])


def test_stdout_carries_start_one_progress_per_run_and_done(bench):
    kinds = [e["event"] for e in bench.events]
    done = bench.events[-1]

    assert kinds == ["start", "progress", "progress", "done"]
    assert [(e["method"], e["side"]) for e in bench.events[1:3]] == [("lora", "ours"), ("lora", "baseline")]
    assert done["outputs"]["results"] == bench.path
    assert done["metrics"]["lora_tokens_per_s_ratio"] == bench.results["comparison"]["lora"]["tokens_per_s_ratio"]
    assert "qlora_skipped" in done["metrics"]


@pytest.mark.parametrize(
    "change, field",
    [
        ({"seq_len": 4}, "seq_len"),
        ({"lora": {"r": 0}}, "lora.r"),
        ({"methods": ["lora", "dora"]}, "methods[1]"),
        ({"model": {"arch": "llama", "hidden_size": 64}}, "model.intermediate_size"),
        ({"model": "/no/such/model"}, "model"),
        ({"dataset": {"sigma": -1}}, "dataset.sigma"),
        ({"rows_per_step": 3}, "rows_per_step"),  # not a multiple of micro_batch_size (2)
        ({"stepz": 3}, "stepz"),
    ],
)
def test_a_bad_config_fails_with_exit_code_2_naming_the_field(tmp_path, change, field):
    config = tmp_path / "bench.json"
    config.write_text(json.dumps({**TINY_BENCH, **change}))

    code, events = run_cli(["bench", "--config", str(config), "--out", str(tmp_path / "results.json")])

    assert code == EXIT_BAD_INPUT
    assert [e["event"] for e in events] == ["error"]  # nothing started, nothing loaded
    assert events[0]["field"] == field and events[0]["type"] == "CONFIG_INVALID"
    assert not (tmp_path / "results.json").exists()
