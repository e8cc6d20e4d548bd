"""
Background workers for the tests, the benchmarks and `make run`: the real thing,
`python manage.py procrastinate worker`, in a subprocess on a given database.

    with JobWorker.start(database_name="test_paymentsite", stripe_api_base=fs.api_base) as worker:
        ...; worker.kill()   # SIGKILL, as a crash would; with supervise=True it is started again

and, for tests that run inside one transaction (where no other process can see
their rows), `run_jobs_in_process()`: the jobs queued so far, run here, in this
thread and transaction, through procrastinate's own SQL, as one worker would.

Development and tests only: production runs the command itself, under a process
supervisor (systemd, a container's restart policy) that starts it again when it exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devkit.processes import PROJECT_ROOT, ServerProcess
from devkit.siteserver import site_environment

READY_LINE = "Starting worker on"

# What the tests' workers are told, so that a crash is noticed and repaired in seconds
# rather than in production's half-minute: heartbeat every second, a worker silent for
# three is dead, and the jobs of dead workers are looked for every two seconds; a failing
# event is retried twice, a second apart, then failed. Only the recovery is scheduled:
# reconcile and retry_refunds would call the local Stripe in the middle of other tests.
FAST_RECOVERY_ENV = {
    "WEBHOOK_APPLY_RETRIES": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
    "JOBS_HEARTBEAT_SECONDS": "1",
    "JOBS_STALLED_AFTER_SECONDS": "3",
    "JOBS_POLL_SECONDS": "1",
    "JOBS_SHUTDOWN_SECONDS": "5",
    "SCHEDULE_STALLED_JOBS": "* * * * * */2",
    "SCHEDULE_RECONCILE": "",
    "SCHEDULE_RETRY_REFUNDS": "",
    "SCHEDULE_OVERDUE_PAYMENTS": "",
    "SCHEDULE_SYNC_LEDGER": "",
    # Notifications to the storefront: retried every second, and given 2 s to answer,
    # so a receiver in trouble (tests of devkit.receiver) recovers within a test.
    "NOTIFICATIONS_TIMEOUT": "2",
    "NOTIFICATIONS_RETRY_SECONDS": ",".join(["1"] * 60),
}


class JobWorkerError(RuntimeError):
    """The worker did not start."""


class JobWorker(ServerProcess):
    """
    One `manage.py procrastinate worker` process. With `supervise`, a thread starts
    it again whenever it exits without being asked to (as systemd's Restart=always
    would): a worker exits when its database goes away, and is SIGKILLed by tests.
    """

    start_timeout = 30.0
    stop_timeout = 10.0
    log_name = "worker.log"

    def __init__(self, process: subprocess.Popen[bytes], log_dir: Path, command: list[str], env: dict[str, str]):
        super().__init__(0, process, log_dir)
        self.command = command
        self.env = env
        self.restarts = 0
        self._supervised = False
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None

    @classmethod
    def start(
        cls,
        *,
        database_name: str,
        stripe_api_base: str,
        concurrency: int = 2,
        supervise: bool = False,
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
        settings_module: str = "paymentsite.settings",
        wait: bool = True,
    ) -> JobWorker:
        """
        Start a worker on `database_name` (or `database_url`) and the local Stripe;
        wait until it runs jobs (unless not `wait`: then call `wait_until_ready()`).
        """
        log_dir = Path(tempfile.mkdtemp(prefix="jobworker-"))
        env = site_environment(
            database_name=database_name,
            stripe_api_base=stripe_api_base,
            settings_module=settings_module,
            database_url=database_url,
            extra_env={"JOBS_CONCURRENCY": str(concurrency), **(extra_env or {})},
        )
        command = [sys.executable, "manage.py", "procrastinate", "worker"]
        worker = cls(cls._spawn(command, env, log_dir), log_dir, command, env)
        worker._supervised = supervise
        if wait:
            worker.wait_until_ready()
        return worker

    def wait_until_ready(self) -> None:
        """Wait until the worker runs jobs (JobWorkerError, and the worker stopped, if it does not)."""
        try:
            self._wait_until_ready(since=0)
        except BaseException:
            self.stop(keep_log=True)
            raise
        if self._supervised and self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, daemon=True)
            self._supervisor.start()

    @staticmethod
    def _spawn(command: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
        with open(log_dir / JobWorker.log_name, "ab") as log:
            return subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def _wait_until_ready(self, *, since: int) -> None:
        """Wait for the READY_LINE written after the log's first `since` characters."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                if READY_LINE in self.log_text()[since:]:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                raise JobWorkerError(f"the worker exited with {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise JobWorkerError(f"the worker did not start within {self.start_timeout} s:\n{self.log_tail()}")

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            if self.process.poll() is not None and not self._stopping.is_set():
                # Give a database that went away a moment before trying again, as a supervisor's back-off does.
                time.sleep(0.5)
                if self._stopping.is_set():
                    return
                since = len(self.log_text())
                self.process = self._spawn(self.command, self.env, self.log_dir)
                self.restarts += 1
                try:
                    self._wait_until_ready(since=since)
                except JobWorkerError:
                    continue
            self._stopping.wait(0.1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self, *, timeout: float = 30.0) -> int:
        """
        SIGKILL the worker, as a crash would: its running jobs stay `doing` until
        recovered. Answers the pid. A supervised worker that has just exited (its
        database went away) is killed once its supervisor has started it again.
        """
        deadline = time.monotonic() + timeout
        while True:
            process = self.process
            if process.poll() is None:
                try:
                    os.kill(process.pid, signal.SIGKILL)
                    return process.pid
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise JobWorkerError(f"no running worker to kill within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, keep_log: bool = False) -> None:
        self._stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=5)
        super().stop(keep_log=keep_log)


# --- Jobs run in the test's own transaction ----------------------------------


@dataclass
class InProcessRun:
    """What `run_jobs_in_process` did: the outcome of each job it ran, in order."""

    ran: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ran)


def run_jobs_in_process(*, due_now: bool = False, max_jobs: int = 1000) -> InProcessRun:
    """
    Run every job that is due, one after the other, in this thread and on this
    thread's database connection (so inside a test's transaction), until none is
    left, as one worker would: procrastinate's own SQL fetches each (locks and
    priorities respected), a success deletes it (the site's `delete_jobs`), a
    failure is retried later or failed by the task's retry strategy. A job
    retried for later is not waited for, unless `due_now` says its time has come
    (every waiting job is made due first). The task runs without the worker's
    middleware (its connection handling would end the test's transaction).
    """
    from django.db import connection
    from procrastinate import JobContext, jobs
    from procrastinate.contrib.django import app
    from procrastinate.sql import queries

    run = InProcessRun()
    if due_now:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    for _ in range(max_jobs):
        with connection.cursor() as cursor:
            cursor.execute(
                queries["fetch_job"].replace("%(queues)s", "%s").replace("%(worker_id)s", "%s"), [None, None]
            )
            columns = [column.name for column in cursor.description]
            row = dict(zip(columns, cursor.fetchone(), strict=True))
        if row["id"] is None:
            return run
        if isinstance(row["args"], str):
            # Django's connection leaves JSON undecoded (its JSONField decodes it).
            row["args"] = json.loads(row["args"])
        job = jobs.Job.from_row(row)
        task = app.tasks[job.task_name]
        context = JobContext(
            app=app, job=job, worker_name="in-process", start_timestamp=time.time(), abort_reason=lambda: None
        )
        arguments = [context] if task.pass_context else []
        try:
            result = task.func(*arguments, **job.task_kwargs)
        except Exception as exc:
            retry = task.get_retry_exception(exception=exc, job=job)
            with connection.cursor() as cursor:
                if retry is not None:
                    decision = retry.retry_decision
                    cursor.execute(
                        "SELECT procrastinate_retry_job_v2(%s, %s, %s, %s, %s)",
                        [job.id, decision.retry_at, decision.priority, decision.queue, decision.lock],
                    )
                else:
                    cursor.execute("SELECT procrastinate_finish_job_v1(%s, 'failed', false)", [job.id])
            run.ran.append((job.task_name, f"{'retried' if retry else 'failed'}: {type(exc).__name__}: {exc}"))
            continue
        with connection.cursor() as cursor:
            cursor.execute("SELECT procrastinate_finish_job_v1(%s, 'succeeded', true)", [job.id])
        run.ran.append((job.task_name, str(result)))
    return run
