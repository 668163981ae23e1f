"""from-gguf on the real SmolLM2-135M-Instruct GGUF (scripts/setup.sh puts it in .tools/models) and on small files made
here that it must refuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tuneloop_trainer import from_gguf as fg
from tuneloop_trainer.checkpoint import sha256_file
from tuneloop_trainer.protocol import BadInput

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2_GGUF = ROOT / ".tools" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPTS = [
    [{"role": "user", "content": "How should a beginner start with squats? I weigh 82 kg."}],
    [{"role": "system", "content": "You are a patient maths tutor."}, {"role": "user", "content": "Why is 0.1 + 0.2 not 0.3?"}],
    [{"role": "user", "content": "Summarise: the meeting moved to 14:30 on 2026-12-04."}],
]


@pytest.fixture(scope="module")
def smollm2_gguf() -> Path:
    # Not a skip: without the file this module would test nothing, and a passing run must mean it was tested.
    if not SMOLLM2_GGUF.is_file():
        pytest.fail(f"{SMOLLM2_GGUF} is missing: run `bash scripts/setup.sh` (it installs the model)")
    return SMOLLM2_GGUF


@pytest.fixture(scope="module")
def converted(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The real conversion, made the way a crash would leave things: a first conversion is killed with SIGKILL while
    it builds, then a second one runs into the same --out. The GGUF load's next-token logits on PROMPTS are recorded
    on the way (the model transformers loads from the file, before anything is saved)."""
    out = tmp_path_factory.mktemp("gguf") / "smollm2"
    killed = subprocess.Popen(cli_args("--gguf", str(smollm2_gguf), "--out", str(out)), env=cli_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    build = out.parent / f".{out.name}.tmp-{killed.pid}"
    deadline = time.monotonic() + 120
    while not build.exists():
        assert killed.poll() is None, "the conversion ended before it could be killed"
        assert time.monotonic() < deadline, "the conversion never started its build"
        time.sleep(0.02)
    killed.kill()
    killed.wait()
    assert leftovers(out.parent, out.name) == [build.name]  # the killed build, and nothing at --out

    recorded: dict = {}
    check = fg._check

    def recording_check(model, tokenizer, saved, tolerance):
        recorded["ids"] = [fg._encode(tokenizer, m) for m in PROMPTS]
        with torch.no_grad():
            recorded["logits"] = [model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in recorded["ids"]]
        return check(model, tokenizer, saved, tolerance)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fg, "_check", recording_check)
        result = fg.from_gguf(str(smollm2_gguf), str(out))
    assert leftovers(out.parent, out.name) == [out.name]  # the dead build is gone
    return {"out": out, "result": result, **recorded}


def cli_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT / "gpu-worker" / "src")}


def cli_args(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuneloop_trainer", "from-gguf", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_args(*args), capture_output=True, text=True, env=cli_env(), timeout=300)


def write_gguf(path: Path, arch: str, tensor_type: str = "F32") -> Path:
    """A small GGUF file: the given architecture, one tensor of the given type (its bytes are zeros)."""
    from gguf import GGMLQuantizationType, GGUFWriter
    from gguf.constants import GGML_QUANT_SIZES

    writer = GGUFWriter(str(path), arch)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    qtype = GGMLQuantizationType[tensor_type]
    if qtype == GGMLQuantizationType.F32:
        writer.add_tensor("token_embd.weight", np.zeros((4, 256), dtype=np.float32))
    else:
        block, size = GGML_QUANT_SIZES[qtype]
        raw = np.zeros((4, 256 // block * size), dtype=np.uint8)  # 4 rows of 256 values, as bytes
        writer.add_tensor("token_embd.weight", raw, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name == name or p.name.startswith(f".{name}.tmp"))


# ------------------------------------------------------------------------------------------ the real model


def test_converted_directory_gives_the_gguf_loads_logits(converted: dict) -> None:
    """Tolerance: 1e-4 absolute on every next-token logit (and the same top token). Both sides hold the same float32
    numbers (the GGUF's Q4_1 blocks dequantized), so anything above rounding noise means a tensor was lost, renamed
    or transposed on the way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, result = converted["out"], converted["result"]
    ours = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    for messages, ids, expected in zip(PROMPTS, converted["ids"], converted["logits"], strict=True):
        assert fg._encode(tokenizer, messages) == ids  # the saved tokenizer encodes as the GGUF's does
        with torch.no_grad():
            logits = ours(input_ids=torch.tensor([ids])).logits[0, -1]
        assert float((logits - expected).abs().max()) <= 1e-4
        assert int(logits.argmax()) == int(expected.argmax())
    assert result["architecture"] == "llama"
    assert result["parameters"] == sum(p.numel() for p in ours.parameters())
    assert 134_000_000 < result["parameters"] < 135_000_000
    assert result["max_logit_diff"] <= 1e-4
    assert result["tensor_types"]["Q4_1"] > 0


def test_tokenizer_follows_the_gguf_pre_tokenizer(converted: dict) -> None:
    """SmolLM2's GGUF says `smollm`: digits one by one. transformers' own GGUF loader would keep "1200" whole; the
    converted tokenizer splits it, as llama.cpp (and so Ollama) does."""
    from transformers import AutoTokenizer

    assert converted["result"]["pre_tokenizer"] == "smollm"
    tokenizer = AutoTokenizer.from_pretrained(str(converted["out"]))
    pieces = tokenizer.tokenize("I run 1200 m")
    assert [p for p in pieces if p.strip("Ġ").isdigit()] == ["1", "2", "0", "0"]
    text = tokenizer.apply_chat_template(PROMPTS[1], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a patient maths tutor.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_writes_the_serving_copy_and_a_marker(smollm2_gguf: Path, converted: dict) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    out, result = converted["out"], converted["result"]
    marker = json.loads((out / fg.MARKER_FILE).read_text())
    assert marker["source_sha256"] == result["source_sha256"] == sha256_file(str(smollm2_gguf))
    assert marker["serving_sha256"] == sha256_file(str(out / fg.SERVING_FILE))
    served = GGUFReader(str(out / fg.SERVING_FILE))
    original = GGUFReader(str(smollm2_gguf))
    assert {t.tensor_type for t in served.tensors} <= {GGMLQuantizationType.F16, GGMLQuantizationType.F32}
    assert [t.name for t in served.tensors] == [t.name for t in original.tensors]
    for key in ("tokenizer.ggml.pre", "tokenizer.chat_template", "tokenizer.ggml.bos_token_id"):
        assert served.fields[key].contents() == original.fields[key].contents()
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_rerun_on_the_same_file_does_nothing_and_a_busy_directory_is_refused(
    smollm2_gguf: Path, converted: dict, tmp_path: Path
) -> None:
    out = converted["out"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert fg.from_gguf(str(smollm2_gguf), str(out))["model_dir"] == str(out)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="is not empty and was not made from this file"):
        fg.from_gguf(str(smollm2_gguf), str(busy))
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------------------------ refused files


def refused(path: Path, out: Path) -> str:
    """The BadInput from converting `path` into `out`, after checking that nothing was left at or beside `out`."""
    with pytest.raises(BadInput) as caught:
        fg.from_gguf(str(path), str(out))
    assert caught.value.type == "MODEL_INVALID" and caught.value.field == "--gguf"
    assert leftovers(out.parent, out.name) == []
    return str(caught.value)


def test_the_command_refuses_a_file_that_is_not_gguf_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_text('{"not": "a model"}')
    result = run_cli("--gguf", str(tmp_path / "model.gguf"), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout.splitlines()[-1])
    assert error["event"] == "error" and error["type"] == "MODEL_INVALID" and error["field"] == "--gguf"
    assert "not a GGUF file (no GGUF magic)" in error["message"]
    assert leftovers(tmp_path, "out") == []
    assert "does not exist" in refused(tmp_path / "nope.gguf", tmp_path / "out")


def test_refuses_a_file_cut_short(smollm2_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with open(smollm2_gguf, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(4 << 20))  # the header and the first tensors of a 93 MB file
    assert "not a readable GGUF file" in refused(cut, tmp_path / "out")


def test_refuses_an_architecture_transformers_cannot_load_as_a_chat_model(tmp_path: Path) -> None:
    for arch in ("bert", "t5"):
        message = refused(write_gguf(tmp_path / f"{arch}.gguf", arch), tmp_path / "out")
        assert f"architecture '{arch}' is not supported" in message and "llama" in message


def test_refuses_tensor_types_that_cannot_be_dequantized(tmp_path: Path) -> None:
    message = refused(write_gguf(tmp_path / "q8k.gguf", "llama", "Q8_K"), tmp_path / "out")
    assert "tensor types Q8_K cannot be dequantized" in message and "Q4_1" in message


def test_refuses_a_model_transformers_cannot_load_and_removes_its_build(tmp_path: Path) -> None:
    """A header that passes (llama, F32) with no vocabulary and no model shape: the load fails inside the build."""
    message = refused(write_gguf(tmp_path / "empty-llama.gguf", "llama"), tmp_path / "out")
    assert "transformers cannot load" in message


def test_refuses_a_bad_tolerance_and_an_out_that_is_a_file(smollm2_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BadInput, match="is not a directory"):
        fg.from_gguf(str(smollm2_gguf), str(tmp_path / "file"))
    with pytest.raises(BadInput, match=r"in \[0, 1\)"):
        fg.from_gguf(str(smollm2_gguf), str(tmp_path / "out"), tolerance=-1)
    with pytest.raises(BadInput, match="parent directory"):
        fg.from_gguf(str(smollm2_gguf), str(tmp_path / "no" / "such" / "out"))
    assert os.listdir(tmp_path) == ["file"]
