"""tuneloop-trainer: the commands the GPU worker runs.

    python -m tuneloop_trainer init-tiny --out DIR [--text FILE ...]
    python -m tuneloop_trainer train --config FILE [--resume DIR]
    python -m tuneloop_trainer evaluate --config FILE
    python -m tuneloop_trainer export --adapter DIR --out DIR [--merge --base DIR]
    python -m tuneloop_trainer bench --config FILE
    python -m tuneloop_trainer ollama-stage --base DIR [--adapter DIR] --out DIR [--merge auto|always|never]
    python -m tuneloop_trainer parity --config FILE

Each prints JSON lines on stdout (see protocol.py) and logs on stderr; `python -m tuneloop_trainer CMD --help` for
a command's flags. Heavy imports (torch, transformers) happen inside each command, after its arguments and config
have been validated, so bad input fails in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .protocol import EXIT_BAD_INPUT, EXIT_CRASH, EXIT_INTERRUPTED, BadInput, ErrorType, Interrupted, emit, setup_logging

# command -> module; each module has add_arguments(parser) and main(args) -> int
COMMANDS = {
    "init-tiny": "tiny",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "bench": "bench",
    "ollama-stage": "ollama",
    "parity": "parity",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tuneloop-trainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f".{module}", __package__)
        except ModuleNotFoundError as err:
            if err.name != f"{__package__}.{module}":
                raise
            continue  # a command not built yet is simply not offered
        modules[name] = mod
        p = sub.add_parser(name, help=(mod.__doc__ or "").strip().split("\n")[0])
        mod.add_arguments(p)
    args = parser.parse_args(argv)
    log = setup_logging()
    try:
        return int(modules[args.command].main(args) or 0)
    except BadInput as err:
        message = f"{err.field}: {err}" if err.field else str(err)
        log.error("%s", message)
        emit("error", type=err.type, message=message, field=err.field)
        return EXIT_BAD_INPUT
    except Interrupted as err:
        log.warning("interrupted: %s", err)
        return EXIT_INTERRUPTED
    except Exception as err:  # noqa: BLE001 - the one place that turns a crash into a protocol line
        kind = ErrorType.CRASH
        if type(err).__name__ == "OutOfMemoryError":
            kind = ErrorType.GPU_OOM
        traceback.print_exc(file=sys.stderr)
        emit("error", type=kind, message=f"{type(err).__name__}: {err}")
        return EXIT_CRASH


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
