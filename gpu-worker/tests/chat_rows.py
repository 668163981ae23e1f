"""Test data for the trainer's tests: small, deterministic chat rows in tuneloop's app domains, and configs.

Every answer follows its question's template and repeats the question's slot words, so even a tiny random model
can learn it within a few dozen steps; different slot combinations make held-out rows that are new but learnable.
"""

from __future__ import annotations

import itertools
import json
import os
from typing import Any

SYSTEM = "You are a helpful assistant for the app. Keep answers short."

TEMPLATES = [
    (
        "How many {a} should a beginner do on {b}?",
        "On {b}, start with three sets of {a} and rest one minute between sets.",
        ["squats", "push-ups", "lunges", "planks"],
        ["Monday", "Wednesday", "Friday", "Sunday"],
    ),
    (
        "My order {a} has not arrived in {b}.",
        "Sorry about order {a}. I have asked the courier in {b} to check it today.",
        ["A-1042", "B-2210", "C-3307", "D-4415"],
        ["Leeds", "Lyon", "Porto", "Graz"],
    ),
    (
        "I feel {a} before my {b}.",
        "Feeling {a} before a {b} is common. Try three slow breaths before the {b} starts.",
        ["nervous", "tired", "restless", "tense"],
        ["interview", "exam", "meeting", "flight"],
    ),
]


def chat_rows(n: int, *, offset: int = 0) -> list[dict]:
    """`n` rows {"messages": [...]}; rows from offset on, in a fixed interleaved order over domains and slots."""
    combos = [
        (t, a, b)
        for (a_i, b_i) in itertools.product(range(4), range(4))
        for t in range(len(TEMPLATES))
        for a, b in [(TEMPLATES[t][2][a_i], TEMPLATES[t][3][(b_i + a_i) % 4])]
    ]
    rows = []
    for i in range(offset, offset + n):
        t, a, b = combos[i % len(combos)]
        question, answer = TEMPLATES[t][0], TEMPLATES[t][1]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": question.format(a=a, b=b)},
                    {"role": "assistant", "content": answer.format(a=a, b=b)},
                ]
            }
        )
    return rows


def write_rows(path: str, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def write_config(directory: str, model_dir: str, **overrides: Any) -> str:
    """A small, fast training config in `directory` (train.jsonl and validation.jsonl written beside it)."""
    os.makedirs(directory, exist_ok=True)
    train = write_rows(os.path.join(directory, "train.jsonl"), chat_rows(36))
    validation = write_rows(os.path.join(directory, "validation.jsonl"), chat_rows(8, offset=40))
    cfg = {
        "base_model": model_dir,
        "train_file": train,
        "validation_file": validation,
        "output_dir": os.path.join(directory, "out"),
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05},
        "learning_rate": 5e-3,
        "warmup_ratio": 0.1,
        "epochs": 8,
        "effective_batch_size": 4,
        "micro_batch_size": 2,
        "max_length": 256,
        "checkpoint_every_steps": 4,
        "checkpoint_every_minutes": 0,
        "keep_checkpoints": 10,
        "device": "cpu",
        "seed": 3,
    }
    cfg.update(overrides)
    path = os.path.join(directory, "train.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return path


def read_events(text: str) -> list[dict]:
    """The protocol lines of a trainer's stdout, parsed; any non-JSON line fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
