"""Checkpoints: complete and self-describing, corrupt ones detected and skipped, pruning that keeps what matters."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from tuneloop_trainer import checkpoint as ckpt

# peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` in get_peft_model; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    """A tiny LoRA model with an optimizer and scheduler that have taken two steps (so they have real state)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj"]))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=10)
    ids = torch.randint(3, 100, (2, 16))
    for _ in range(2):
        model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def save(root, step, trained) -> str:
    model, optimizer, scheduler = trained
    return ckpt.save_checkpoint(str(root), step, model=model, optimizer=optimizer, scheduler=scheduler,
                                trainer_state={"epoch": 0.5, "tokens_seen": 123})  # fmt: skip


def flip_byte(path: str, offset: int = -10) -> None:
    with open(path, "r+b") as f:
        f.seek(offset, os.SEEK_END)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_checkpoint_holds_every_file_listed_in_a_manifest_written_last(tmp_path, trained):
    path = save(tmp_path, 7, trained)

    assert os.path.basename(path) == "step-00000007"
    assert os.listdir(tmp_path) == ["step-00000007"]  # no temporary directory left behind
    manifest = json.loads((tmp_path / "step-00000007" / "manifest.json").read_text())
    assert (manifest["format"], manifest["version"], manifest["step"]) == ("tuneloop-checkpoint", 1, 7)
    assert set(ckpt.REQUIRED_FILES) <= set(manifest["files"])
    for name, meta in manifest["files"].items():
        assert os.path.getsize(os.path.join(path, name)) == meta["size"]
        assert ckpt.sha256_file(os.path.join(path, name)) == meta["sha256"]
    state = json.loads((tmp_path / "step-00000007" / "trainer_state.json").read_text())
    assert state == {"epoch": 0.5, "tokens_seen": 123, "step": 7}
    ckpt.verify_checkpoint(path)


def test_loading_restores_weights_optimizer_scheduler_and_rng_from_a_moved_copy(tmp_path, trained, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    model, optimizer, scheduler = trained
    path = save(tmp_path / "a", 3, trained)
    expected_draw = torch.rand(4)
    moved = shutil.copytree(path, tmp_path / "elsewhere" / "step-00000003")  # downloaded somewhere else
    torch.manual_seed(99)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=["q_proj", "v_proj"])
    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), lora)
    fresh_opt = torch.optim.AdamW([p for p in fresh.parameters() if p.requires_grad], lr=1e-2)
    fresh_sched = get_scheduler("cosine", fresh_opt, num_warmup_steps=1, num_training_steps=10)

    state = ckpt.load_checkpoint(str(moved), fresh, fresh_opt, fresh_sched)

    assert state["step"] == 3
    assert torch.equal(torch.rand(4), expected_draw)  # the RNG continues where it was when saved
    trained_weights = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    for name, value in fresh.state_dict().items():
        if "lora_" in name:
            assert torch.equal(value, trained_weights[name]), name
    assert fresh_sched.state_dict() == scheduler.state_dict()
    saved_state, loaded_state = optimizer.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    for key in saved_state:
        assert torch.equal(saved_state[key]["exp_avg"], loaded_state[key]["exp_avg"])


def test_a_flipped_byte_is_detected_and_the_previous_checkpoint_is_used(tmp_path, trained, caplog):
    older = save(tmp_path, 10, trained)
    newer = save(tmp_path, 20, trained)
    flip_byte(os.path.join(newer, "adapter_model.safetensors"))

    with pytest.raises(ckpt.CorruptCheckpoint, match="adapter_model.safetensors: sha256"):
        ckpt.verify_checkpoint(newer)
    assert ckpt.latest_verified(str(tmp_path)) == older
    assert "skipping checkpoint" in caplog.text and "step-00000020" in caplog.text


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: os.remove(os.path.join(p, "manifest.json")), "no manifest.json"),
        (lambda p: os.remove(os.path.join(p, "optimizer.pt")), "missing file optimizer.pt"),
        (lambda p: open(os.path.join(p, "rng.pt"), "ab").write(b"x"), "rng.pt: size"),
        (lambda p: open(os.path.join(p, "manifest.json"), "w").write("{"), "unreadable manifest.json"),
    ],
    ids=["no-manifest", "missing-file", "size-mismatch", "torn-manifest"],
)
def test_verify_names_what_is_wrong(tmp_path, trained, damage, reason):
    path = save(tmp_path, 1, trained)
    damage(path)

    with pytest.raises(ckpt.CorruptCheckpoint, match=reason):
        ckpt.verify_checkpoint(path)


def test_a_crash_mid_write_leaves_nothing_that_counts_as_a_checkpoint(tmp_path, trained):
    good = save(tmp_path, 5, trained)
    # A writer killed before its manifest: a newer final-named directory without one, and a temporary directory
    # of a process that no longer exists.
    torn = shutil.copytree(good, tmp_path / "step-00000009")
    os.remove(os.path.join(torn, "manifest.json"))
    dead = shutil.copytree(good, tmp_path / "step-00000011.tmp-999999999")

    assert ckpt.latest_verified(str(tmp_path)) == good
    assert not os.path.exists(dead)  # stale temporaries are cleaned up
    assert os.path.exists(torn)  # a torn final-named dir is skipped, left for inspection


def test_saving_a_step_again_replaces_the_leftover(tmp_path, trained):
    first = save(tmp_path, 4, trained)
    flip_byte(os.path.join(first, "scheduler.pt"))

    second = save(tmp_path, 4, trained)

    assert second == first
    ckpt.verify_checkpoint(second)
    assert os.listdir(tmp_path) == ["step-00000004"]


def test_prune_keeps_the_newest_verified_and_is_idempotent(tmp_path, trained):
    paths = [save(tmp_path, step, trained) for step in (1, 2, 3, 4, 5)]
    flip_byte(os.path.join(paths[4], "adapter_model.safetensors"))  # the newest is corrupt: it does not count

    deleted = ckpt.prune(str(tmp_path), keep=2)
    again = ckpt.prune(str(tmp_path), keep=2)

    assert sorted(deleted) == paths[:2]
    assert again == []
    assert sorted(os.listdir(tmp_path)) == ["step-00000003", "step-00000004", "step-00000005"]
    assert ckpt.latest_verified(str(tmp_path)) == paths[3]
