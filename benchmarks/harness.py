"""
What the benchmarks share: a fresh database, `manage.py` against it, and figures.

Benchmarks run from the project's root as modules (`python -m benchmarks.<name>`),
against real processes only: the local Stripe, gunicorn, PostgreSQL. They report
figures; they assert nothing about time.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from devkit.pgcluster import PrivateCluster
from devkit.processes import PROJECT_ROOT
from devkit.siteserver import SiteServer, site_environment

ADMIN_DSN = "postgres://postgres@127.0.0.1:5432/postgres"
# Management commands that never call Stripe still need an API base to start.
NO_STRIPE = "http://127.0.0.1:9"


def fresh_database(name: str, *, cluster: PrivateCluster | None = None) -> None:
    """Drop and create `name` (on the shared PostgreSQL, or on `cluster`), then migrate it."""
    with psycopg.connect(cluster.url("postgres") if cluster else ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    manage(name, "migrate", "--no-input", "-v", "0", database_url=cluster.url(name) if cluster else None)


def manage(database_name: str, *args: str, stripe_api_base: str = NO_STRIPE, database_url: str | None = None) -> str:
    """Run `manage.py ARGS` on `database_name` (or `database_url`); answers its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=site_environment(database_name=database_name, stripe_api_base=stripe_api_base, database_url=database_url),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def api_token(
    database_name: str, username: str = "benchmark", *, staff: bool = False, database_url: str | None = None
) -> str:
    """An API token for a user (staff with `refunds.add_refund` if asked), created if needed."""
    code = (
        "from django.contrib.auth.models import Permission, User\n"
        "from rest_framework.authtoken.models import Token\n"
        f"user, _ = User.objects.get_or_create(username={username!r}, defaults={{'is_staff': {staff!r}}})\n"
        f"if {staff!r}: user.user_permissions.add(Permission.objects.get(codename='add_refund'))\n"
        "print(Token.objects.get_or_create(user=user)[0].key)\n"
    )
    return manage(database_name, "shell", "-c", code, database_url=database_url).strip().splitlines()[-1]


@contextlib.contextmanager
def site_servers(count: int, *, workers: int, **start_options):
    """`count` SiteServers of `workers` workers each, on one database (SiteServer.start's options)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(SiteServer.start(workers=workers, **start_options)) for _ in range(count)]


def setup_django(database_name: str, *, stripe_api_base: str, database_url: str | None = None) -> None:
    """
    Set this process up as a site process on the benchmark's database and the
    local Stripe, for the scenarios that prepare rows, run the operator's
    commands in-process and check the books (devkit.scenarios).
    """
    import django

    os.environ.update(
        site_environment(database_name=database_name, stripe_api_base=stripe_api_base, database_url=database_url)
    )
    django.setup()


def scenario_users(database_name: str, *, database_url: str | None = None) -> tuple[object, str]:
    """The customer whose payments the scenario uses, and a refunding staff member's API token."""
    from django.contrib.auth.models import User

    token = api_token(database_name, "benchmark-staff", staff=True, database_url=database_url)
    customer, _ = User.objects.get_or_create(username="benchmark-customer")
    return customer, token


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 when it is gone), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    with open("/proc/cpuinfo") as cpuinfo:
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()}"


def print_table(title: str, headers: list[str], rows: list[list[object]]) -> None:
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


@contextlib.contextmanager
def code_at(ref: str):
    """The project's files at git `ref` in a temporary folder (git archive), for a server of that code."""
    with tempfile.TemporaryDirectory(prefix="perf-code-") as folder:
        archive = subprocess.run(["git", "archive", ref], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield Path(folder)


@contextlib.contextmanager
def site_server_at(root: Path, **start_options):
    """A SiteServer (SiteServer.start's options) running the code in `root` instead of this tree."""
    import devkit.siteserver as siteserver

    saved = siteserver.PROJECT_ROOT
    siteserver.PROJECT_ROOT = root
    try:
        server = SiteServer.start(**start_options)
    finally:
        siteserver.PROJECT_ROOT = saved
    with server:
        yield server
