"""Stopping: SIGTERM/SIGINT, the parent's death and the end of stdin, for every long command (train, evaluate,
parity).

    def add_arguments(parser):
        lifecycle.add_arguments(parser)                 # --watch-stdin
    def main(args, config):                             # the config is read (and bad input refused) first
        with lifecycle.supervised(args.watch_stdin, "before the evaluation finished; nothing written") as stop:
            ...                                         # a stop raises Interrupted (exit 75) at once, or, after
                                                        # stop.defer(), waits until the loop checks stop.is_set()

What stops a command: SIGTERM or SIGINT; on Linux the death of the parent process (the kernel sends SIGTERM,
through prctl(PR_SET_PDEATHSIG), and a parent that died before that was set is noticed too); with --watch-stdin,
EOF on stdin (the driver holds a pipe open; when it dies, the pipe closes). Until the command calls `defer()`
(train does, once its loop starts) there is nothing to save, so a stop ends the command at once: a preempted host's
grace period is better spent exiting than finishing a model load.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .protocol import Interrupted

log = logging.getLogger("tuneloop_trainer.lifecycle")

# Recorded at import (the dispatcher imports this module first), before anything slow, so a parent that dies while
# we load torch is still noticed.
PARENT_PID = os.getppid()
PR_SET_PDEATHSIG = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--watch-stdin",
        action="store_true",
        help="treat EOF on stdin as SIGTERM (the driver holds a pipe open; if the driver dies, the pipe closes)",
    )


class StopNow(BaseException):
    """Raised by the signal handler before `defer()`. A BaseException, like KeyboardInterrupt, so that library
    code's `except Exception` (transformers has many, around imports and loading) cannot swallow it."""


class StopRequest:
    """A flag the signal handlers and the stdin watcher set; a loop that has called `defer()` reads it.

    `unsaved` ends the message of a stop that comes before `defer()` (it says what is lost).
    """

    def __init__(self, unsaved: str = "before training started; nothing to checkpoint") -> None:
        self._event = threading.Event()
        self.reason = ""
        self.unsaved = unsaved
        self.deferred = False
        self._raised = False

    def set(self, reason: str) -> None:
        if self._event.is_set():
            log.warning("%s (already stopping: %s)", reason, self.reason)
            return
        self.reason = reason
        self._event.set()
        when = "after the current step, with a checkpoint" if self.deferred else "now: there is nothing to save yet"
        log.warning("%s: stopping %s", reason, when)

    def is_set(self) -> bool:
        return self._event.is_set()

    def defer(self) -> None:
        """From now on a stop waits for the loop (which checkpoints, then stops)."""
        self.deferred = True

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            self.set(f"received {signal.Signals(signum).name}")
            if not self.deferred and not self._raised:  # once: a second signal must not break the unwinding
                self._raised = True
                raise StopNow(f"{self.reason} {self.unsaved}")

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def guard_against_orphaning(stop: StopRequest) -> None:
    """On Linux, asks the kernel for SIGTERM when the parent dies, and catches a parent that died already."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != PARENT_PID:
        stop.set(f"parent process {PARENT_PID} exited before the command started")


def watch_stdin(stop: StopRequest) -> threading.Thread:
    """Reads (and discards) stdin on a daemon thread; EOF means the driver is gone."""

    def watch() -> None:
        # os.read on the raw descriptor, not sys.stdin.buffer: a daemon thread blocked inside the buffered reader
        # holds its lock, and the interpreter aborts at exit ("could not acquire lock for <stdin> at interpreter
        # shutdown") instead of exiting 0.
        try:
            fd = sys.stdin.fileno()
            while os.read(fd, 65536):
                pass
        except (OSError, ValueError):
            pass
        stop.set("stdin closed (the driver is gone)")
        if not stop.deferred:
            os.kill(os.getpid(), signal.SIGTERM)  # only the main thread can be interrupted: via its signal handler

    thread = threading.Thread(target=watch, name="watch-stdin", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def supervised(watch: bool, unsaved: str = "before training started; nothing to checkpoint") -> Iterator[StopRequest]:
    """Installs every stop (signals, parent death, and with `watch` the end of stdin) for the block it wraps; a stop
    before `defer()` leaves the block as Interrupted (the dispatcher exits 75)."""
    stop = StopRequest(unsaved)
    try:
        stop.install_signal_handlers()
        guard_against_orphaning(stop)
        if stop.is_set():
            raise Interrupted(stop.reason)
        if watch:
            watch_stdin(stop)
        yield stop
    except StopNow as err:
        raise Interrupted(str(err)) from None
