"""
Servers the development kit runs in subprocesses (the local Stripe, the site under
gunicorn): a free port to put them on, and stopping them and their logs cleanly.
Standard library only.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Self

# Every server of the kit listens on this machine only.
DEFAULT_HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    # The kernel picks a free port; the tiny race until the server binds it is acceptable in tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((DEFAULT_HOST, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server we started in a subprocess, logging to a file in its own folder; ``with`` stops it."""

    log_name = "server.log"
    stop_timeout = 5.0

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_dir: Path) -> None:
        self.port = port
        self.process = process
        self.log_dir = log_dir
        self.log_path = log_dir / self.log_name

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, keep_log: bool = False) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after `stop_timeout`) and remove its log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not keep_log:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
