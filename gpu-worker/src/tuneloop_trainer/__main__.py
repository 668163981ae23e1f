"""tuneloop-trainer: the commands the GPU worker runs.

    python -m tuneloop_trainer init-tiny --out DIR [--text FILE ...]
    python -m tuneloop_trainer from-gguf --gguf FILE --out DIR
    python -m tuneloop_trainer train --config FILE [--resume DIR] [--watch-stdin]
    python -m tuneloop_trainer evaluate --config FILE [--watch-stdin]
    python -m tuneloop_trainer export --adapter DIR --out DIR [--merge --base DIR]
    python -m tuneloop_trainer bench --config FILE [--out FILE]
    python -m tuneloop_trainer ollama-stage --base DIR [--adapter DIR] --out DIR [--merge auto|always|never]
    python -m tuneloop_trainer parity --config FILE [--watch-stdin]

Each prints JSON lines on stdout (see protocol.py) and logs on stderr; `python -m tuneloop_trainer CMD --help` for
a command's flags. Each command is the module of its name (init-tiny: init_tiny.py, bench: bench/); a module that
cannot be imported makes its command fail with the import error (exit 1), and leaves the others working. Heavy
imports (torch, transformers) happen inside each command, after its arguments and config have been validated, so
bad input fails in well under a second. Configs: config.py; device and precision: runtime.py; stopping:
lifecycle.py."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import lifecycle  # noqa: F401 - first, so that it records the parent's pid before anything slow
from .config import load_config
from .protocol import EXIT_BAD_INPUT, EXIT_CRASH, EXIT_INTERRUPTED, BadInput, ErrorType, Interrupted, emit, setup_logging

# Each command is the module of the same name ("-" as "_"), with add_arguments(parser) and main(args) -> int; a
# module that reads a config file names its dataclass in CONFIG, and then gets --config here and main(args, config):
# every command's config is read the one way (config.load_config).
COMMANDS = ("init-tiny", "from-gguf", "train", "evaluate", "export", "bench", "ollama-stage", "parity")


def module_name(command: str) -> str:
    return command.replace("-", "_")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tuneloop-trainer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    broken: dict[str, str] = {}  # command -> the traceback of its module's import
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f".{module_name(name)}", __package__)
        except Exception:  # noqa: BLE001 - reported when the command is asked for; the others still work
            broken[name] = traceback.format_exc()
            sub.add_parser(name, help="(cannot be imported; run it to see why)")
            continue
        modules[name] = mod
        p = sub.add_parser(name, help=(mod.__doc__ or "").strip().split("\n")[0])
        if getattr(mod, "CONFIG", None) is not None:
            p.add_argument("--config", required=True, help=f"the {name} config, JSON (see `{name}`'s module docstring)")
        mod.add_arguments(p)
    args, extra = parser.parse_known_args(argv)  # a broken command's own arguments are unknown
    if extra and args.command not in broken:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    log = setup_logging()
    if args.command in broken:
        sys.stderr.write(broken[args.command])
        error = broken[args.command].strip().splitlines()[-1]
        module = f"{__package__}.{module_name(args.command)}"
        message = f"command {args.command}: module {module} cannot be imported: {error}"
        log.error("%s", message)
        emit("error", type=ErrorType.CRASH, message=message)
        return EXIT_CRASH
    try:
        mod = modules[args.command]
        if getattr(mod, "CONFIG", None) is not None:
            return int(mod.main(args, load_config(mod.CONFIG, args.config)) or 0)
        return int(mod.main(args) or 0)
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
