"""
The site served by real gunicorn workers in a subprocess, for the tests and the
benchmarks that need what only separate processes show: several workers (or
several servers) on one database, a worker killed mid-request, real sockets.

    with SiteServer.start(database_name="test_paymentsite", stripe_api_base=fs.api_base) as site:
        requests.post(site.url + "/webhooks/stripe/", ...)

Development and tests only: production runs `gunicorn paymentsite.wsgi` itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devkit.processes import DEFAULT_HOST, PROJECT_ROOT, ServerProcess, free_port

# Not secrets: the values every test and benchmark server shares with its clients.
TEST_WEBHOOK_SECRET = "whsec_paymentsite_tests"
TEST_STRIPE_KEY = "sk_test_paymentsite_tests"
# 50+ characters: with DEBUG off settings refuse a shorter one.
TEST_SECRET_KEY = "siteserver-not-a-production-key-0123456789abcdefghij"


def site_environment(
    *,
    database_name: str,
    stripe_api_base: str,
    webhook_secret: str = TEST_WEBHOOK_SECRET,
    settings_module: str = "paymentsite.settings",
    extra_env: dict[str, str] | None = None,
    database_url: str | None = None,
) -> dict[str, str]:
    """
    The environment of a site process (server or manage.py) on `database_name` of
    the shared PostgreSQL (or on `database_url`, another cluster) and the local Stripe.
    """
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings_module,
        "ENV_FILE": "",
        "DEBUG": "false",
        "ALLOWED_HOSTS": f"{DEFAULT_HOST},localhost",
        "DATABASE_URL": database_url or f"postgres://postgres@127.0.0.1:5432/{database_name}",
        "DJANGO_SECRET_KEY": TEST_SECRET_KEY,
        # Plain HTTP on 127.0.0.1; and no throttling: the scenarios send bursts on purpose.
        "SECURE_SSL": "false",
        "API_THROTTLING": "false",
        "STRIPE_SECRET_KEY": TEST_STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": webhook_secret,
        "STRIPE_API_BASE": stripe_api_base,
        "STRIPE_TIMEOUT": "3",
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }


class SiteServerError(RuntimeError):
    """The server did not start."""


class SiteServer(ServerProcess):
    start_timeout = 30.0
    stop_timeout = 10.0
    log_name = "site.log"

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_dir: Path) -> None:
        super().__init__(port, process, log_dir)
        self.url = f"http://{DEFAULT_HOST}:{port}"

    @classmethod
    def start(
        cls,
        *,
        database_name: str,
        stripe_api_base: str,
        workers: int = 2,
        threads: int = 1,
        webhook_secret: str = TEST_WEBHOOK_SECRET,
        settings_module: str = "paymentsite.settings",
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> SiteServer:
        """Start gunicorn on a free port of 127.0.0.1 and wait until /healthz answers 200."""
        port = free_port()
        log_dir = Path(tempfile.mkdtemp(prefix="siteserver-"))
        env = site_environment(
            database_name=database_name,
            stripe_api_base=stripe_api_base,
            webhook_secret=webhook_secret,
            settings_module=settings_module,
            extra_env=extra_env,
            database_url=database_url,
        )
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "paymentsite.wsgi",
            "--bind",
            f"{DEFAULT_HOST}:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
        ]
        with open(log_dir / "site.log", "wb") as log:
            process = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = cls(port, process, log_dir)
        try:
            server._wait_until_ready()
        except BaseException:
            server.stop(keep_log=True)
            raise
        return server

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SiteServerError(f"gunicorn exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise SiteServerError(f"gunicorn did not answer within {self.start_timeout} s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: the master's children."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def kill_worker(self) -> int:
        """SIGKILL one worker, as a crash would; the master starts a new one. Answers the killed pid."""
        pid = self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid
