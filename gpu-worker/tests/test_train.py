"""The train command on CPU with the tiny model: it learns, it resumes exactly, and it stops cleanly when told to
or when its driver dies."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from chat_rows import chat_rows, read_events, write_config, write_rows

from tuneloop_trainer import checkpoint as ckpt
from tuneloop_trainer import engine, lifecycle, train
from tuneloop_trainer.config import TrainConfig, load_config
from tuneloop_trainer.protocol import BadInput, ErrorType, Interrupted

# peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` in get_peft_model (conftest's adapter).
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))
# One intra-op thread, here and in the trainers these tests start: the tiny model gains nothing from more, and on a
# couple of shared cores OpenMP threads that spin while they wait make each step ~10x slower when processes
# outnumber cores (four trainers run at once in the signal tests). The numbers do not depend on it.
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
DEADLINE_S = 180  # generous bounds for processes on a busy machine; nothing here asserts speed


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_in_process(config_path: str, **kwargs) -> tuple[dict, list[dict]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        done = train.run(load_config(TrainConfig, config_path), **kwargs)
    return done, read_events(out.getvalue())


def adapter_tensors(adapter_dir: str) -> dict:
    from safetensors.torch import load_file

    return load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory):
    """Run A: uninterrupted, with a checkpoint every 4 steps (all kept).

    36 rows pack into a dozen or so sequences of <= 256 tokens (the exact count follows the tiny tokenizer), so 8
    epochs of 4 sequences per step make a couple of dozen steps.
    """
    config = write_config(str(tmp_path_factory.mktemp("run-a")), tiny_model_dir)
    done, events = run_in_process(config)
    total = events[0]["total_steps"]
    assert total >= 16, "the resume tests need steps well past the step-8 checkpoint"
    return SimpleNamespace(config=config, cfg=load_config(TrainConfig, config), done=done, events=events, total=total)


def checkpoint_of(reference, step: int) -> str:
    return os.path.join(reference.cfg.checkpoint_root, f"step-{step:08d}")


# ---------------------------------------------------------------------------------------------------- learning


def test_training_lowers_the_held_out_loss(reference):
    from tuneloop_trainer.data import read_rows
    from tuneloop_trainer.model import load_for_training
    from tuneloop_trainer.runtime import resolve_runtime

    cfg = reference.cfg
    runtime = resolve_runtime(cfg)
    base, tokenizer = load_for_training(cfg, runtime)  # a fresh adapter starts with B = 0: exactly the base model
    base_loss, _, _ = engine.evaluation_loss(base, tokenizer, read_rows(cfg.validation_file), cfg, runtime)

    after = reference.done["metrics"]["eval_loss"]
    assert after < base_loss - 0.5, f"held-out loss {base_loss:.3f} -> {after:.3f}"


def test_a_run_reports_start_progress_checkpoints_eval_and_done(reference):
    events, kinds = reference.events, [e["event"] for e in reference.events]

    assert kinds[0] == "start" and kinds[-2:] == ["eval", "done"]
    start = events[0]
    assert (start["step"], start["resumed_from"], start["device"]) == (0, None, "cpu")
    assert start["total_steps"] == start["steps_per_epoch"] * 8
    assert 0 < start["trainable_params"] < start["total_params"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [p["step"] for p in progress] == list(range(1, reference.total + 1))
    assert all(p["tokens_per_s"] > 0 and p["gpu_mem"] is None and p["eta_s"] >= 0 for p in progress)
    saves = [(e["step"], e["reason"]) for e in events if e["event"] == "checkpoint"]
    assert saves == [(step, "steps") for step in range(4, reference.total, 4)] + [(reference.total, "final")]
    done = reference.done
    assert done["metrics"]["steps"] == reference.total and done["metrics"]["final_loss"] == progress[-1]["loss"]
    assert done["outputs"]["checkpoint_dir"] == checkpoint_of(reference, reference.total)
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(os.listdir(done["outputs"]["adapter_dir"]))
    evaluation = events[-2]
    assert math.isclose(evaluation["perplexity"], math.exp(evaluation["loss"]))


def test_eval_every_steps_draws_the_validation_curve_without_changing_the_training(reference, tmp_path):
    config = write_config(str(tmp_path), reference.cfg.base_model, eval_every_steps=5)
    done, events = run_in_process(config)

    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [*range(5, reference.total, 5), reference.total]
    assert all(e["loss"] > 0 and e["rows"] == 8 for e in evals)
    # No dropout in eval mode, so no RNG drawn: every step's loss is the uninterrupted run's, to the bit.
    losses = lambda evs: [e["loss"] for e in evs if e["event"] == "progress"]  # noqa: E731
    assert losses(events) == losses(reference.events)
    assert done["metrics"]["eval_loss"] == reference.done["metrics"]["eval_loss"]


def test_throughput_leaves_out_validation_passes_and_the_eta_keeps_them(capsys):
    # The reporter starts; step 1 ends; a validation pass of 10 s; step 2 ends; a pass of no time
    clock = iter([0.0, 1.0, 1.0, 11.0, 12.0, 12.0, 12.0])
    cfg = SimpleNamespace(log_every_steps=1, run_id="r")
    plan = SimpleNamespace(total_steps=4, steps_per_epoch=4)
    reporter = train.Reporter(cfg, plan, "cpu", first_step=0, clock=lambda: next(clock))
    progress = SimpleNamespace(step=0, tokens_seen=0)
    result = engine.StepResult(loss=1.0, tokens=100, labeled=50, micro_batches=1, grad_norm=1.0, padded_tokens=100)

    for step in (1, 2):
        progress.step, progress.tokens_seen = step, progress.tokens_seen + 100
        reporter.step_done(progress, result, lr=1e-4)
        with reporter.pause():
            pass

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["step"], p["tokens_per_s"], p["eta_s"]) for p in lines] == [(1, 100.0, 3.0), (2, 100.0, 12.0)]


def test_packed_rows_do_not_attend_to_each_other(reference):
    import torch

    from tuneloop_trainer.data import encode, pack
    from tuneloop_trainer.model import load_for_training
    from tuneloop_trainer.runtime import resolve_runtime

    cfg = reference.cfg
    runtime = resolve_runtime(cfg)
    model, tokenizer = load_for_training(cfg, runtime)
    model.eval()
    examples = [encode(tokenizer, row["messages"], cfg.max_length) for row in chat_rows(3)]
    packed = pack(examples, cfg.max_length)
    assert len(packed) == 1 and len(packed[0].seq_lens) == 3

    with torch.no_grad():
        together = engine.forward_loss_sum(model, engine.collate_items(packed, 0, True), "cpu", False)
        apart = sum(engine.forward_loss_sum(model, engine.collate_items([e], 0, False), "cpu", False) for e in examples)

    assert torch.allclose(together, apart, rtol=1e-5)


def test_the_loss_is_normalised_over_the_whole_accumulated_step(reference):
    """Sum of token losses over all micro-batches / labeled tokens of the step, not a mean of micro-batch means."""
    import torch

    from tuneloop_trainer.data import collate_padded, encode
    from tuneloop_trainer.model import load_for_training
    from tuneloop_trainer.runtime import resolve_runtime

    cfg = reference.cfg
    runtime = resolve_runtime(cfg)
    model, tokenizer = load_for_training(cfg, runtime)
    model.eval()  # no dropout, so the two ways of computing the step see the same function
    rows = chat_rows(3)
    rows[2]["messages"][-1]["content"] = "Yes."  # micro-batches with very different numbers of labeled tokens
    examples = [encode(tokenizer, row["messages"], cfg.max_length) for row in rows]
    micro = [collate_padded(examples[:2], 0), collate_padded(examples[2:], 0)]

    class Capture:  # an optimizer that records the gradients it is asked to apply
        def step(self):
            self.grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]

        def zero_grad(self, set_to_none=True):
            model.zero_grad(set_to_none=set_to_none)

    optimizer = Capture()
    result = engine.optimizer_step(model, optimizer, SimpleNamespace(step=lambda: None), micro, 0, runtime)
    whole = collate_padded(examples, 0)
    expected = engine.forward_loss_sum(model, whole, "cpu", False) / engine.labeled_tokens(whole)
    expected.backward()

    assert result.labeled == engine.labeled_tokens(whole)
    assert math.isclose(result.loss, float(expected.detach()), rel_tol=1e-5)
    reference_grads = [p.grad for p in model.parameters() if p.requires_grad]
    clip = min(1.0, 1.0 / float(torch.linalg.vector_norm(torch.stack([g.norm() for g in reference_grads]))))
    for got, want in zip(optimizer.grads, reference_grads):
        assert torch.allclose(got, want * clip, atol=1e-7, rtol=1e-4)


def test_replay_mixes_in_a_seeded_sample_of_earlier_rows(reference, tmp_path):
    earlier = [{"id": i} for i in range(50)]

    sample = train.sample_replay(earlier, n_train_rows=36, fraction=0.2, seed=3)

    assert len(sample) == round(0.2 * 36) and sample == train.sample_replay(earlier, 36, 0.2, 3)
    assert sample != train.sample_replay(earlier, 36, 0.2, 4)
    assert train.sample_replay(earlier[:5], 36, 0.2, 3) == earlier[:5]  # fewer than asked for: all of them
    assert train.sample_replay(earlier, 36, 0.0, 3) == []
    replay = write_rows(str(tmp_path / "earlier.jsonl"), chat_rows(20, offset=60))
    config = write_config(str(tmp_path), reference.cfg.base_model, replay_file=replay, max_steps=1,
                          validation_file=None)  # fmt: skip
    _, events = run_in_process(config)
    assert (events[0]["rows"], events[0]["replay_rows"]) == (36, 7)


def test_incremental_training_continues_the_production_adapter(reference, tmp_path, tiny_adapter_dir):
    import torch

    config = write_config(str(tmp_path), reference.cfg.base_model, init_adapter=tiny_adapter_dir, max_steps=2,
                          validation_file=None)  # fmt: skip

    done, events = run_in_process(config)

    before, after = adapter_tensors(tiny_adapter_dir), adapter_tensors(done["outputs"]["adapter_dir"])
    assert before.keys() == after.keys()  # the production adapter's shape, not the config's lora block
    assert events[0]["trainable_params"] == sum(t.numel() for t in before.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ---------------------------------------------------------------------------------------------------- resume


def test_resuming_from_a_checkpoint_equals_the_uninterrupted_run(reference, tmp_path):
    config = write_config(str(tmp_path), reference.cfg.base_model)  # same data and settings, another directory

    done, events = run_in_process(config, resume=checkpoint_of(reference, 8))

    assert (events[0]["step"], events[0]["resumed_from"]) == (8, checkpoint_of(reference, 8))
    a_losses = {e["step"]: e["loss"] for e in reference.events if e["event"] == "progress"}
    b_losses = {e["step"]: e["loss"] for e in events if e["event"] == "progress"}
    assert sorted(b_losses) == list(range(9, reference.total + 1))
    for step, loss in b_losses.items():
        assert abs(loss - a_losses[step]) <= 1e-5, step
    assert abs(done["metrics"]["final_loss"] - reference.done["metrics"]["final_loss"]) <= 1e-5
    assert abs(done["metrics"]["eval_loss"] - reference.done["metrics"]["eval_loss"]) <= 1e-5
    a_weights, b_weights = adapter_tensors(reference.done["outputs"]["adapter_dir"]), adapter_tensors(
        done["outputs"]["adapter_dir"]
    )
    assert a_weights.keys() == b_weights.keys()
    for name in a_weights:
        assert (a_weights[name] - b_weights[name]).abs().max() <= 1e-6, name


def test_resuming_from_the_final_checkpoint_only_writes_the_outputs(reference, tmp_path):
    config = write_config(str(tmp_path), reference.cfg.base_model)
    final = checkpoint_of(reference, reference.total)

    done, events = run_in_process(config, resume=final)

    assert [e["event"] for e in events] == ["start", "eval", "done"]
    assert done["outputs"]["checkpoint_dir"] == final
    assert done["metrics"]["eval_loss"] == reference.done["metrics"]["eval_loss"]


def test_control_resuming_without_the_rng_state_gives_a_different_loss(reference, tmp_path):
    """Without this, the equality above could pass with the RNG restore broken: dropout must make a difference."""
    config = write_config(str(tmp_path), reference.cfg.base_model)

    done, _ = run_in_process(config, resume=checkpoint_of(reference, 8), restore_rng=False)

    assert abs(done["metrics"]["final_loss"] - reference.done["metrics"]["final_loss"]) > 1e-4


def test_a_corrupt_or_foreign_checkpoint_is_refused_as_checkpoint_invalid(reference, tmp_path):
    corrupt = shutil.copytree(checkpoint_of(reference, 8), tmp_path / "corrupt")
    with open(corrupt / "optimizer.pt", "r+b") as f:
        f.seek(100)
        byte = f.read(1)[0]
        f.seek(100)
        f.write(bytes([byte ^ 0xFF]))
    foreign = write_config(str(tmp_path / "lr"), reference.cfg.base_model, learning_rate=1e-3)

    with pytest.raises(BadInput) as bad_bytes:
        run_in_process(reference.config, resume=str(corrupt))
    with pytest.raises(BadInput) as other_settings:
        run_in_process(foreign, resume=checkpoint_of(reference, 8))

    assert (bad_bytes.value.type, bad_bytes.value.field) == (ErrorType.CHECKPOINT_INVALID, "--resume")
    assert "optimizer.pt: sha256" in str(bad_bytes.value)
    assert other_settings.value.type == ErrorType.CHECKPOINT_INVALID
    assert "learning_rate: checkpoint 0.005, config 0.001" in str(other_settings.value)


def test_the_timer_checkpoints_between_steps(reference, tmp_path):
    config = write_config(str(tmp_path), reference.cfg.base_model, max_steps=3, checkpoint_every_steps=0,
                          checkpoint_every_minutes=1e-6, validation_file=None)  # fmt: skip

    _, events = run_in_process(config)

    assert [(e["step"], e["reason"]) for e in events if e["event"] == "checkpoint"] == [
        (1, "timer"), (2, "timer"), (3, "final"),
    ]  # fmt: skip
    assert "eval" not in [e["event"] for e in events]


def test_a_stop_before_training_starts_exits_without_a_checkpoint(reference, tmp_path):
    config = write_config(str(tmp_path), reference.cfg.base_model)
    stop = lifecycle.StopRequest()
    stop.set("test stop")

    with pytest.raises(Interrupted, match="before training started"):
        run_in_process(config, stop=stop)
    assert not os.path.exists(os.path.join(str(tmp_path), "out", "checkpoints"))


# ---------------------------------------------------------------------------------------------------- signals
#
# Four trainer processes are started together (their torch imports overlap) and each is stopped its own way as
# soon as it reports step 2: SIGTERM; EOF on stdin (--watch-stdin); and SIGKILL of a parent process, with and
# without --watch-stdin (without it, only the kernel's parent-death signal can stop the orphan).

PARENT = """
import subprocess, sys
events, stderr, config, watch = sys.argv[1:5]
extra, stdin = (["--watch-stdin"], subprocess.PIPE) if watch == "yes" else ([], subprocess.DEVNULL)
child = subprocess.Popen([sys.executable, "-m", "tuneloop_trainer", "train", "--config", config, *extra],
                         stdin=stdin, stdout=open(events, "wb"), stderr=open(stderr, "wb"))
print(child.pid, flush=True)
child.wait()
"""

SCENARIOS = ("sigterm", "sigterm-while-loading", "close-stdin", "kill-parent-watch-stdin", "kill-parent-pdeathsig-only")


class StoppedRun:
    """One `python -m tuneloop_trainer train` process, stopped by `name`'s method once it has done step 2."""

    def __init__(self, name: str, directory: str, model_dir: str) -> None:
        self.name = name
        self.config = write_config(directory, model_dir)
        self.events_path = os.path.join(directory, "events.jsonl")
        self.stderr_path = os.path.join(directory, "stderr.log")
        self.proc: subprocess.Popen | None = None  # the trainer, when it is our own child
        self.parent: subprocess.Popen | None = None  # the short-lived parent, in the kill-parent scenarios
        self.stopped = False
        self.rc: int | None = None

    def start(self) -> None:
        if self.name.startswith("kill-parent"):
            watch = "yes" if self.name == "kill-parent-watch-stdin" else "no"
            self.parent = subprocess.Popen(
                [sys.executable, "-c", PARENT, self.events_path, self.stderr_path, self.config, watch],
                stdout=subprocess.PIPE, env=ENV, text=True,
            )  # fmt: skip
            self.pid = int(self.parent.stdout.readline())
            return
        extra, stdin = (["--watch-stdin"], subprocess.PIPE) if self.name == "close-stdin" else ([], subprocess.DEVNULL)
        with open(self.events_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tuneloop_trainer", "train", "--config", self.config, *extra],
                stdin=stdin, stdout=out, stderr=err, env=ENV,
            )  # fmt: skip
        self.pid = self.proc.pid

    def ready(self) -> bool:
        """Whether it is time to stop it: during loading for one scenario, after step 2 for the others."""
        if self.name == "sigterm-while-loading":
            return "preparing:" in self.stderr()
        return any(e["event"] == "progress" and e["step"] >= 2 for e in self.events())

    def stop(self) -> None:
        if self.name.startswith("sigterm"):
            self.proc.send_signal(signal.SIGTERM)
        elif self.name == "close-stdin":
            self.proc.stdin.close()
        else:
            self.parent.kill()
            self.parent.wait()
        self.stopped = True

    def exited(self) -> bool:
        if self.proc is not None:
            self.rc = self.proc.poll()
            return self.rc is not None
        return process_gone(self.pid)

    def kill(self) -> None:
        """Clean-up after a failure: only the processes this object started, by their ids."""
        for proc in (self.proc, self.parent):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        if not process_gone(self.pid):
            os.kill(self.pid, signal.SIGKILL)

    def events(self) -> list[dict]:
        return read_events_file(self.events_path)

    def stderr(self) -> str:
        with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
            return f.read()


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaps counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def read_events_file(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return read_events(text[: text.rfind("\n") + 1])  # the writer may be mid-line


@pytest.fixture(scope="module")
def stopped(reference, tmp_path_factory):
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG and /proc are Linux-only")
    runs = {name: StoppedRun(name, str(tmp_path_factory.mktemp(name)), reference.cfg.base_model) for name in SCENARIOS}
    try:
        for run in runs.values():
            run.start()
        deadline = time.monotonic() + DEADLINE_S
        pending = set(runs)
        while pending:
            assert time.monotonic() < deadline, f"still running: {sorted(pending)}"
            for name in sorted(pending):
                run = runs[name]
                if not run.stopped and run.ready():
                    run.stop()
                elif run.exited():
                    pending.discard(name)  # stopped, or exited on its own (then the test says why)
            time.sleep(0.05)
    finally:
        for run in runs.values():
            run.kill()
    return runs


def assert_stopped_with_a_signal_checkpoint(run: StoppedRun, total_steps: int) -> dict:
    events = run.events()
    assert run.stopped, f"{run.name}: the trainer exited before it was stopped: {run.stderr()[-2000:]}"
    last = events[-1]
    assert last["event"] == "checkpoint" and last["reason"] == "signal", events[-3:]
    assert 2 <= last["step"] < total_steps
    assert "done" not in [e["event"] for e in events]
    ckpt.verify_checkpoint(last["path"])
    return last


def test_sigterm_checkpoints_exits_75_and_resuming_matches_the_uninterrupted_run(reference, stopped):
    run = stopped["sigterm"]

    saved = assert_stopped_with_a_signal_checkpoint(run, reference.total)
    assert run.rc == 75, run.stderr()
    assert "received SIGTERM" in run.stderr()
    done, events = run_in_process(run.config, resume=saved["path"])
    assert events[0]["step"] == saved["step"]
    assert abs(done["metrics"]["final_loss"] - reference.done["metrics"]["final_loss"]) <= 1e-5


def test_sigterm_while_loading_exits_75_at_once_with_nothing_to_checkpoint(stopped):
    run = stopped["sigterm-while-loading"]

    assert run.stopped and run.rc == 75, run.stderr()
    assert run.events() == []  # no start line, no checkpoint: training never began
    assert "before training started" in run.stderr()


def test_closing_stdin_stops_a_trainer_started_with_watch_stdin(reference, stopped):
    run = stopped["close-stdin"]

    assert_stopped_with_a_signal_checkpoint(run, reference.total)
    assert run.rc == 75, run.stderr()
    assert "stdin closed" in run.stderr()


def test_a_run_with_watch_stdin_and_stdin_held_open_finishes_and_exits_0(tiny_model_dir, tmp_path):
    # The driver's way: --watch-stdin with its end of the pipe open for the whole run. The watcher thread is then
    # still blocked reading stdin when the interpreter exits, which must not turn a finished run into a crash.
    config = write_config(str(tmp_path), tiny_model_dir, max_steps=2, epochs=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneloop_trainer", "train", "--config", config, "--watch-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )  # fmt: skip
    try:
        out, err = _wait_keeping_stdin_open(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert read_events(out.decode())[-1]["event"] == "done"
    assert b"Fatal Python error" not in err


def _wait_keeping_stdin_open(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Reads stdout and stderr to the end without closing stdin (communicate() would close it first)."""
    import threading

    chunks: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    proc.wait(timeout=DEADLINE_S)
    for t in readers:
        t.join(timeout=10)
    return chunks.get("out", b""), chunks.get("err", b"")


@pytest.mark.parametrize("name", ["kill-parent-watch-stdin", "kill-parent-pdeathsig-only"])
def test_when_the_parent_is_killed_the_trainer_checkpoints_and_exits(reference, stopped, name):
    run = stopped[name]

    assert_stopped_with_a_signal_checkpoint(run, reference.total)
    log = run.stderr()
    assert "received SIGTERM" in log or "stdin closed" in log
    if name == "kill-parent-pdeathsig-only":
        assert "received SIGTERM" in log  # the kernel's parent-death signal: nothing else could have stopped it


# ---------------------------------------------------------------------------------------------------- qlora


def test_qlora_without_cuda_is_a_config_error(reference, tmp_path):
    import torch

    from tuneloop_trainer.runtime import resolve_runtime

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; the QLoRA training test covers this host")
    config = write_config(str(tmp_path), reference.cfg.base_model, method="qlora", device="auto")

    with pytest.raises(BadInput) as caught:
        resolve_runtime(load_config(TrainConfig, config))

    assert (caught.value.type, caught.value.field) == (ErrorType.CONFIG_INVALID, "method")
    assert "qlora needs CUDA (bitsandbytes 4-bit)" in str(caught.value)


def test_qlora_trains_a_few_steps_on_a_gpu(tiny_model_dir, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA: QLoRA needs bitsandbytes 4-bit on a GPU")
    config = write_config(str(tmp_path), tiny_model_dir, method="qlora", device="cuda", max_steps=3,
                          checkpoint_every_steps=2)  # fmt: skip

    done, events = run_in_process(config)

    start = events[0]
    assert (start["device"], start["precision"], start["method"]) == ("cuda", "bf16", "qlora")
    assert done["metrics"]["steps"] == 3 and math.isfinite(done["metrics"]["final_loss"])
    assert all(e["gpu_mem"] > 0 for e in events if e["event"] == "progress")
    ckpt.verify_checkpoint(done["outputs"]["checkpoint_dir"])
