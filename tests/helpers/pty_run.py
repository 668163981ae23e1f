"""Runs a command in a pseudo-terminal, as a person runs it in a terminal, for tests.

Usage: python3 pty_run.py COMMAND [ARGS...]

The command becomes the session leader and foreground process group of a new terminal. Everything it writes to
the terminal is copied to this script's stdout. Lines on this script's stdin are keys a person presses:
  INTR  Ctrl-C (the terminal's line discipline sends SIGINT to the foreground process group)
  QUIT  Ctrl-\\
When the command exits, this script exits with its status (128 + N when killed by signal N).
"""
import os
import pty
import select
import sys


def main() -> int:
    pid, master = pty.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    keys = {b"INTR": b"\x03", b"QUIT": b"\x1c"}
    stdin = sys.stdin.buffer.fileno()
    watching = [master, stdin]
    pending = b""
    status = None
    while True:
        ready, _, _ = select.select(watching, [], [], 0.2)
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last holder closed it
                data = b""
            if data:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                watching.remove(master)
        if stdin in ready:
            data = os.read(stdin, 1024)
            if not data:
                watching.remove(stdin)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                key = keys.get(line.strip())
                if key:
                    os.write(master, key)
        if status is None:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
        if status is not None and master not in watching:
            break
        if status is not None:
            # The command is gone; read what it left in the terminal, then stop.
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                break
    return os.waitstatus_to_exitcode(status) if os.waitstatus_to_exitcode(status) >= 0 else 128 - os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
