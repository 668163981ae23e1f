"""Loads models: the base with a trainable LoRA (or QLoRA) adapter for training, and base + adapters for inference.

    from tuneloop_trainer.config import TrainConfig, load_config
    from tuneloop_trainer.model import load_for_training
    from tuneloop_trainer.runtime import resolve_runtime
    cfg = load_config(TrainConfig, "train.json")
    runtime = resolve_runtime(cfg)                 # device, precision and attention, decided once (runtime.py)
    model, tokenizer = load_for_training(cfg, runtime)

    model = load_for_inference("/models/base", runtime)        # evaluate, parity: eval mode, no adapter yet
    peft_model = load_adapter(model, None, "/adapters/v7", name="v7", field="versions.v7")

Gradient checkpointing "auto" is on for bases over ~1B parameters. QLoRA loads the base in 4-bit NF4 (double
quantisation, bf16 compute) through bitsandbytes, which is imported only on that path.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

from .config import TrainConfig
from .protocol import BadInput, ErrorType
from .runtime import Runtime

log = logging.getLogger("tuneloop_trainer.model")

CHECKPOINTING_THRESHOLD = 1_000_000_000  # parameters; above this, activations rather than weights fill the GPU


def load_tokenizer(cfg: TrainConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot load a tokenizer from {cfg.base_model}: {err}", type=ErrorType.MODEL_INVALID,
                       field="base_model") from None  # fmt: skip
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base(cfg: TrainConfig, runtime: Runtime) -> Any:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a tqdm bar on stderr per load is noise in the worker's logs
    kwargs: dict[str, Any] = {
        "dtype": runtime.dtype,
        "attn_implementation": runtime.attn_implementation,
    }
    if cfg.method == "qlora":
        kwargs["quantization_config"] = _four_bit_config()
    if runtime.device == "cuda":
        kwargs["device_map"] = {"": torch.cuda.current_device()}  # straight onto the GPU, no full copy in host RAM
    try:
        model = AutoModelForCausalLM.from_pretrained(cfg.base_model, **kwargs)
    except (OSError, ValueError) as err:
        raise BadInput(f"cannot load a causal LM from {cfg.base_model}: {err}", type=ErrorType.MODEL_INVALID,
                       field="base_model") from None  # fmt: skip
    # With a KV cache in play transformers skips the packed-sequence mask it builds from position_ids, and rows
    # packed together would attend to each other; training never needs the cache.
    model.config.use_cache = False
    return model


def _four_bit_config() -> Any:
    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise BadInput("qlora needs bitsandbytes: pip install 'tuneloop-trainer[qlora]'", field="method")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def wants_checkpointing(cfg: TrainConfig, n_params: int) -> bool:
    if cfg.gradient_checkpointing == "auto":
        return n_params > CHECKPOINTING_THRESHOLD
    return bool(cfg.gradient_checkpointing)


def prepare_base(model: Any, cfg: TrainConfig) -> None:
    """Freezes the base, readies a 4-bit base for training, and turns on activation checkpointing if wanted."""
    n_params = model.num_parameters()
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        # Checkpointing is switched on below, the transformers 5 way, rather than by peft's deprecated call.
        prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for param in model.parameters():
        param.requires_grad_(False)
    if wants_checkpointing(cfg, n_params):
        # Non-reentrant checkpointing works with frozen inputs; transformers also hooks the embeddings so the
        # input to each checkpointed block requires grad, which the reentrant variant would need.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        log.info("activation checkpointing on (%.2fB parameters)", n_params / 1e9)


def attach_adapter(model: Any, cfg: TrainConfig) -> Any:
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing`; the FutureWarning is theirs, not ours.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _attach_adapter(model, cfg)


def _attach_adapter(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, PeftModel, get_peft_model

    if cfg.init_adapter is not None:
        try:
            peft_model = PeftModel.from_pretrained(model, cfg.init_adapter, is_trainable=True)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise BadInput(f"cannot load adapter {cfg.init_adapter}: {err}", type=ErrorType.MODEL_INVALID,
                           field="init_adapter") from None  # fmt: skip
        _warn_if_shape_differs(peft_model, cfg)
        return peft_model
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        bias="none",
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as err:  # e.g. a target module the architecture does not have
        raise BadInput(str(err), field="lora.target_modules") from None


def _warn_if_shape_differs(peft_model: Any, cfg: TrainConfig) -> None:
    existing = peft_model.peft_config["default"]
    if (existing.r, existing.lora_alpha, existing.lora_dropout) != (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout):
        log.warning(
            "init_adapter keeps its own shape r=%s alpha=%s dropout=%s (config asks r=%s alpha=%s dropout=%s)",
            existing.r, existing.lora_alpha, existing.lora_dropout, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout,
        )  # fmt: skip


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; a 4-bit tensor counts its logical elements, not its packed bytes."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if param.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def activation_checkpointing(model: Any) -> bool:
    """Whether any module of `model` (a PeftModel or a plain transformers model) checkpoints its activations."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def load_model(cfg: TrainConfig, runtime: Runtime) -> Any:
    """The trainable model: a peft PeftModel in train mode, on the runtime's device."""
    model = load_base(cfg, runtime)
    prepare_base(model, cfg)
    model = attach_adapter(model, cfg)
    model.train()
    return model


def load_for_training(cfg: TrainConfig, runtime: Runtime) -> tuple[Any, Any]:
    """The trainable model (load_model) and its tokenizer."""
    tokenizer = load_tokenizer(cfg)
    return load_model(cfg, runtime), tokenizer


def load_for_inference(base_model: str, runtime: Runtime) -> Any:
    """The base model (evaluate, parity) in eval mode, in the runtime's precision, on its device."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is for log lines
    kwargs: dict[str, Any] = {"dtype": runtime.dtype}
    if runtime.attn_implementation is not None:
        kwargs["attn_implementation"] = runtime.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(base_model, **kwargs)
    return model.to(runtime.device).eval()


def load_adapter(model: Any, peft_model: Any, path: str, *, name: str, field: str) -> Any:
    """Adapter `path` as the active adapter `name`, for inference: onto `model` as a new PeftModel when `peft_model`
    is None, else loaded into `peft_model`. A mismatch with the base is a BadInput naming `field`."""
    from peft import PeftModel

    try:
        if peft_model is None:
            peft_model = PeftModel.from_pretrained(model, path, adapter_name=name, is_trainable=False)
        else:
            peft_model.load_adapter(path, adapter_name=name, is_trainable=False)
        peft_model.set_adapter(name, inference_mode=True)
    except (ValueError, RuntimeError, KeyError) as err:  # shape mismatch, wrong base, unreadable weights
        raise BadInput(f"cannot load adapter {path} onto the base model: {err}", type=ErrorType.MODEL_INVALID,
                       field=field) from err  # fmt: skip
    return peft_model
