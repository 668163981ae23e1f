"""Shared fixtures: one tiny model (and one LoRA adapter on it) per test session, made locally by init_tiny."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Llama with a ChatML tokenizer (tuneloop_trainer.init_tiny), built once per session."""
    from tuneloop_trainer.init_tiny import init_tiny

    return init_tiny(str(tmp_path_factory.mktemp("tiny") / "model"), seed=0)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A LoRA adapter for the tiny model with random, non-zero B matrices, so that it changes the model's outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)  # peft starts B at zero, which would make the adapter a no-op
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    model.save_pretrained(str(out))
    return str(out)
