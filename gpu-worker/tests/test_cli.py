"""The dispatcher: command names are module names, a module that cannot be imported is an error naming why, and
every long command (not only train) stops on its driver's behalf."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest
from chat_rows import chat_rows, read_events, write_rows

from tuneloop_trainer import __main__ as dispatcher
from tuneloop_trainer.protocol import EXIT_CRASH, EXIT_INTERRUPTED

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src"))


def test_each_command_is_the_module_of_its_name():
    for command in dispatcher.COMMANDS:
        module = importlib.import_module(f"tuneloop_trainer.{command.replace('-', '_')}")
        assert callable(module.add_arguments) and callable(module.main), command


def test_a_command_whose_module_fails_to_import_exits_1_with_the_import_error(monkeypatch, capsys):
    real = importlib.import_module

    def import_module(name, package=None):
        if name == ".train":
            raise ModuleNotFoundError("No module named 'some_dependency'", name="some_dependency")
        return real(name, package)

    monkeypatch.setattr(dispatcher.importlib, "import_module", import_module)

    code = dispatcher.main(["train", "--config", "train.json"])
    other = dispatcher.main(["export", "--adapter", "/no/such/adapter", "--out", "/tmp/x"])  # the others still work

    assert code == EXIT_CRASH and other == 2
    error = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (error["event"], error["type"]) == ("error", "CRASH")
    assert "tuneloop_trainer.train cannot be imported" in error["message"]
    assert "No module named 'some_dependency'" in error["message"]


@pytest.mark.parametrize("command", ["evaluate", "parity"])
def test_evaluate_and_parity_stop_with_exit_75_when_the_driver_closes_stdin(command, tiny_model_dir, tmp_path):
    if command == "evaluate":
        rows = write_rows(str(tmp_path / "val.jsonl"), chat_rows(2))
        config = {"base_model": tiny_model_dir, "versions": {"base": None}, "validation_file": rows}
    else:
        case = {"id": "a", "messages": [{"role": "user", "content": "Hi"}], "ollama": {"content": "Hello"}}
        config = {"base_model": tiny_model_dir, "cases": [case]}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))

    proc = subprocess.run(
        [sys.executable, "-m", "tuneloop_trainer", command, "--config", str(path), "--watch-stdin"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip

    assert proc.returncode == EXIT_INTERRUPTED, proc.stderr[-2000:]
    assert "stdin closed" in proc.stderr
    assert "done" not in [e["event"] for e in read_events(proc.stdout)]
