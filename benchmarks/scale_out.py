"""
Scale-out on one PostgreSQL: payment creation and webhook ingest through one and
two gunicorn servers, the background workers' apply with one and four worker
processes, and where the time goes in each phase while it runs.

Each phase is sampled every 0.2 s: CPU (the machine's busy share, and the cores
used by the gunicorn servers, the PostgreSQL backends of the benchmark's
database, the job workers, the local Stripe and the client threads, from
/proc), PostgreSQL's wait events of the active backends (pg_stat_activity),
lock waits (pg_locks, not granted) and connections (the database's backends
against max_connections).

    .venv/bin/python -m benchmarks.scale_out [--requests 1000] [--events 2000] [--pgbouncer] [--quick]

`--pgbouncer` puts PgBouncer (Debian's package, /usr/sbin/pgbouncer) in front of
PostgreSQL in transaction mode for the gunicorn servers, with the settings the
README's "PgBouncer" section gives; the job workers keep a direct connection
(procrastinate's LISTEN needs a session of its own).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

from benchmarks.engine import build_events, post_all
from benchmarks.harness import (
    ADMIN_DSN,
    NO_STRIPE,
    api_token,
    cpu_seconds,
    fresh_database,
    machine,
    percentile,
    print_table,
)
from devkit.fakestripe import FakeStripe
from devkit.siteserver import SiteServer
from devkit.workers import FAST_RECOVERY_ENV, JobWorker

DATABASE = "perf_bench_scale"
DSN = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
PGBOUNCER_PORT = 19401
WORKER_ENV = {key: value for key, value in FAST_RECOVERY_ENV.items() if key.startswith("SCHEDULE_")}
CORE_GROUPS = ("gunicorn", "postgres", "job workers", "stripe", "clients")
BODY = {"amount": 2000, "currency": "usd", "description": "scale-out"}


def query(sql: str, params: list | None = None) -> list[tuple]:
    with psycopg.connect(DSN) as conn:
        return conn.execute(sql, params or []).fetchall()


# --- Where the time goes -------------------------------------------------------------------


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Sampler:
    """Samples the machine and the database every `every` seconds while a phase runs (a `with` block)."""

    def __init__(self, groups: dict[str, callable], every: float = 0.2) -> None:
        # groups: name -> a function answering the pids of that group now
        self.groups = groups
        self.every = every
        self.waits: collections.Counter[str] = collections.Counter()
        # The statements that wait on a lock (pg_stat_activity.query), counted per sample.
        self.blocked: collections.Counter[str] = collections.Counter()
        self.active_samples = 0
        self.lock_waits_max = 0
        self.lock_waits_sum = 0
        self.connections_max = 0
        self.samples = 0
        self.cpu_first: dict[int, float] = {}
        self.cpu_last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        (self.max_connections,) = query("SHOW max_connections")[0]

    def __enter__(self):
        self.busy0, self.total0 = machine_busy()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = time.monotonic() - self.started
        busy1, total1 = machine_busy()
        self.busy = (busy1 - self.busy0) / max(1, total1 - self.total0)

    def _pids(self) -> dict[int, str]:
        pids = {}
        for name, find in self.groups.items():
            for pid in find():
                pids[pid] = name
        return pids

    def _run(self) -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            while not self.stop.is_set():
                backends = conn.execute(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 70) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    [DATABASE],
                ).fetchall()
                (waiting,) = conn.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                    " WHERE NOT l.granted AND a.datname = %s",
                    [DATABASE],
                ).fetchone()
                pids = self._pids()
                for pid, *_ in backends:
                    pids[pid] = "postgres"
                for pid, name in pids.items():
                    seconds = cpu_seconds(pid)
                    self.cpu_first.setdefault(pid, seconds)
                    self.cpu_last[pid] = (name, seconds)
                for _, state, wait_type, wait_event, statement in backends:
                    if state == "active":
                        self.active_samples += 1
                        self.waits[f"{wait_type}:{wait_event}" if wait_type else "CPU (no wait)"] += 1
                    if wait_type == "Lock":
                        self.blocked[" ".join(statement.split())] += 1
                self.lock_waits_max = max(self.lock_waits_max, waiting)
                self.lock_waits_sum += waiting
                self.connections_max = max(self.connections_max, len(backends))
                self.samples += 1
                self.stop.wait(self.every)

    def cores(self) -> dict[str, float]:
        """Cores used by each group over the phase."""
        used: dict[str, float] = collections.defaultdict(float)
        for pid, (name, last) in self.cpu_last.items():
            used[name] += last - self.cpu_first[pid]
        return {name: seconds / self.seconds for name, seconds in used.items()}

    def summary(self) -> list[str]:
        """machine busy, cores by group, top waits, lock waits, connections: one table row's cells."""
        cores = self.cores()
        waits = ", ".join(
            f"{name} {100 * count / max(1, self.active_samples):.0f}%" for name, count in self.waits.most_common(3)
        )
        return [
            f"{100 * self.busy:.0f}%",
            " / ".join(f"{cores.get(name, 0):.2f}" for name in CORE_GROUPS)
            + (f" (pgbouncer {cores['pgbouncer']:.2f})" if "pgbouncer" in cores else ""),
            waits or "-",
            f"{self.lock_waits_max} (mean {self.lock_waits_sum / max(1, self.samples):.1f})",
            f"{self.connections_max} / {self.max_connections}",
        ]


# --- PgBouncer ------------------------------------------------------------------------------


@contextlib.contextmanager
def pgbouncer(port: int = PGBOUNCER_PORT):
    """PgBouncer in transaction mode in front of the shared PostgreSQL, for DATABASE; answers its URL."""
    folder = Path(tempfile.mkdtemp(prefix="perf-pgbouncer-"))
    (folder / "users.txt").write_text('"postgres" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{DATABASE} = host=127.0.0.1 port=5432 dbname={DATABASE}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {folder}\n"
        "auth_type = trust\nauth_file = users.txt\n"
        "pool_mode = transaction\n"
        "default_pool_size = 20\nmax_client_conn = 1000\n"
        # Django sends lock_timeout as a startup option (settings.DATABASES): set on the database instead.
        "ignore_startup_parameters = extra_float_digits,options\n"
        f"logfile = {folder}/pgbouncer.log\npidfile = {folder}/pgbouncer.pid\n"
    )
    shutil.chown(folder, "postgres")
    for name in ("users.txt", "pgbouncer.ini"):
        shutil.chown(folder / name, "postgres")
    process = subprocess.Popen(
        ["/usr/sbin/pgbouncer", "-u", "postgres", str(folder / "pgbouncer.ini")],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(url, prepare_threshold=None) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = folder / "pgbouncer.log"
                    raise RuntimeError(f"pgbouncer did not start:\n{log.read_text() if log.exists() else ''}") from None
                time.sleep(0.2)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


# --- The phases ----------------------------------------------------------------------------


def create_payments(urls: list[str], token: str, count: int, clients: int) -> tuple[list[float], dict, float]:
    """`count` POST /api/payments/ from `clients` threads, request n to server n mod len(urls)."""
    local = threading.local()

    def one(n: int) -> tuple[float, int]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
        started = time.perf_counter()
        response = session.post(
            urls[n % len(urls)] + "/api/payments/", json=BODY, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        return time.perf_counter() - started, response.status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    return [r[0] for r in results], dict(collections.Counter(r[1] for r in results)), elapsed


def ingest(urls: list[str], bodies: list[str], clients: int) -> tuple[list[float], dict, float]:
    """The bodies spread over the servers (body n to server n mod len(urls)), `clients` threads in all."""
    per_server = [bodies[i :: len(urls)] for i in range(len(urls))]
    results = []

    def run(i: int) -> None:
        results.append(post_all(urls[i] + "/webhooks/stripe/", per_server[i], concurrency=clients // len(urls)))

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = [latency for result in results for latency in result[0]]
    codes: collections.Counter[int] = collections.Counter()
    for result in results:
        codes.update(result[1])
    return latencies, dict(codes), elapsed


def row(phase: str, servers: str, count: int, codes: dict, seconds: float, latencies: list[float] | None):
    return [
        phase,
        servers,
        count,
        ", ".join(f"{code}: {n}" for code, n in sorted(codes.items())),
        f"{count / seconds:.0f}",
        f"{statistics.median(latencies) * 1000:.1f}" if latencies else "-",
        f"{percentile(latencies, 0.99) * 1000:.1f}" if latencies else "-",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=1000, help="payment creations per configuration (1000)")
    parser.add_argument("--events", type=int, default=2000, help="webhook events per configuration (2000)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers per server (2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (4)")
    parser.add_argument("--clients", type=int, default=16, help="client threads (16)")
    parser.add_argument("--pgbouncer", action="store_true", help="the servers through PgBouncer, transaction mode")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it runs")
    args = parser.parse_args()
    requests_count, events_count = (100, 200) if args.quick else (args.requests, args.events)

    fresh_database(DATABASE)
    token = api_token(DATABASE)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        # What Django's startup option sets per connection, for the connections through PgBouncer too.
        conn.execute(f"ALTER DATABASE {DATABASE} SET lock_timeout = '10s'")
    table, where, blocked_statements = [], [], []
    with contextlib.ExitStack() as stack:
        fake_stripe = stack.enter_context(FakeStripe.start())
        server_env: dict[str, str] = {}
        database_url = None
        bouncer_pid = None
        if args.pgbouncer:
            database_url, bouncer_pid = stack.enter_context(pgbouncer())
            # Server-side cursors (WITH HOLD) outlive the transaction PgBouncer lends a connection for.
            database_url += "?DISABLE_SERVER_SIDE_CURSORS=true"
        servers = [
            stack.enter_context(
                SiteServer.start(
                    database_name=DATABASE,
                    stripe_api_base=fake_stripe.api_base,
                    workers=args.web_workers,
                    threads=args.threads,
                    extra_env=server_env,
                    database_url=database_url,
                )
            )
            for _ in range(2)
        ]
        job_workers: list[JobWorker] = []

        def gunicorn_pids(count: int):
            return lambda: [
                pid for server in servers[:count] for pid in (server.process.pid, *children(server.process.pid))
            ]

        def groups(count: int) -> dict:
            found = {
                "gunicorn": gunicorn_pids(count),
                "job workers": lambda: [pid for w in job_workers for pid in (w.process.pid, *children(w.process.pid))],
                "stripe": lambda: [fake_stripe.process.pid],
                "clients": lambda: [os.getpid()],
            }
            if bouncer_pid:
                found["pgbouncer"] = lambda: [bouncer_pid]
            return found

        def drain(worker_count: int, event_ids: list[str]) -> None:
            """The backlog `event_ids` applied by `worker_count` worker processes (4 jobs at once each)."""
            with Sampler(groups(0)) as sampler:
                job_workers[:] = [
                    JobWorker.start(
                        database_name=DATABASE,
                        stripe_api_base=NO_STRIPE,
                        concurrency=4,
                        extra_env=WORKER_ENV,
                        wait=False,
                    )
                    for _ in range(worker_count)
                ]
                for worker in job_workers:
                    worker.wait_until_ready()
                deadline = time.monotonic() + 600
                while (
                    query(
                        "SELECT 1 FROM webhooks_webhookevent"
                        " WHERE outcome = 'pending' AND stripe_event_id = ANY(%s) LIMIT 1",
                        [event_ids],
                    )
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.2)
                for worker in job_workers:
                    worker.stop()
            job_workers.clear()
            # From the first apply to the last, by the database's clock: worker start-up is not apply time.
            (seconds,) = query(
                "SELECT extract(epoch FROM max(processed_at) - min(processed_at)) FROM webhooks_webhookevent"
                " WHERE stripe_event_id = ANY(%s)",
                [event_ids],
            )[0]
            outcomes = dict(
                query(
                    "SELECT outcome, count(*) FROM webhooks_webhookevent WHERE stripe_event_id = ANY(%s) GROUP BY 1",
                    [event_ids],
                )
            )
            label = f"{worker_count} worker process{'es' if worker_count > 1 else ''} x 4 jobs"
            table.append(
                row("apply (backlog of the ingest)", label, len(event_ids), outcomes, float(seconds or 1), None)
            )
            where.append(["apply", label, *sampler.summary()])
            blocked_statements.append(("apply", label, sampler.blocked))

        for count, apply_workers in ((1, 1), (2, 4)):
            urls = [server.url for server in servers[:count]]
            label = f"{count} x {args.web_workers} workers x {args.threads} threads"
            with Sampler(groups(count)) as sampler:
                latencies, codes, seconds = create_payments(urls, token, requests_count, args.clients)
            table.append(row("payment creation", label, requests_count, codes, seconds, latencies))
            where.append(["payment creation", label, *sampler.summary()])

            events = build_events(events_count, prefix=f"scale{count}")
            with Sampler(groups(count)) as sampler:
                latencies, codes, seconds = ingest(urls, [body for _, body in events], args.clients)
            table.append(row("webhook ingest (verify, store, queue)", label, events_count, codes, seconds, latencies))
            where.append(["webhook ingest", label, *sampler.summary()])
            drain(apply_workers, [event_id for event_id, _ in events])

    setup = "through PgBouncer (transaction mode)" if args.pgbouncer else "direct to PostgreSQL"
    print_table(
        f"Scale-out on one PostgreSQL, servers {setup}, {args.clients} client threads, on {machine()}",
        ["phase", "servers / workers", "operations", "answers / outcomes", "per second", "p50 ms", "p99 ms"],
        table,
    )
    print_table(
        "Where the time goes (sampled every 0.2 s): machine busy; cores used by gunicorn / PostgreSQL backends / "
        "job workers / local Stripe / clients; PostgreSQL wait events of the active backends; lock waits; connections",
        ["phase", "servers / workers", "machine busy", "cores: gunicorn / pg / jobs / stripe / clients",
         "top waits (active backends)", "lock waits max", "connections max / limit"],
        where,
    )  # fmt: skip
    for phase, label, blocked in blocked_statements:
        if blocked:
            print(f"\nWaiting on a lock during {phase} ({label}), by statement (samples):")
            for statement, count in blocked.most_common(3):
                print(f"- {count}: {statement}")


if __name__ == "__main__":
    main()
