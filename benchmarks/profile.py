"""
Where a gunicorn worker spends its time under one kind of request: py-spy samples
the worker while a client loop runs, and the frames are ranked by the share of
samples they appear in (inclusive) for the project's and Django's own code.

    .venv/bin/python -m benchmarks.profile payment_create [--seconds 15] [--conn-max-age 0]
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

from benchmarks.harness import api_token, fresh_database
from devkit.fakestripe import FakeStripe
from devkit.siteserver import SiteServer

DATABASE = "perf_bench_profile"


def payment_create_loop(site: SiteServer, token: str, stop: threading.Event) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    while not stop.is_set():
        session.post(
            site.url + "/api/payments/",
            json={"amount": 2000, "currency": "usd"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        )


SCENARIOS = {"payment_create": payment_create_loop}
PLUMBING = ("WSGIHandler.", "BaseHandler.", "convert_exception_to_response", "MiddlewareMixin.", "View.as_view")


def rank(collapsed: Path, top: int) -> list[tuple[float, str]]:
    """Frames by the share of samples they appear in, from py-spy's collapsed stacks."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            # The server's own loop is in every sample; what it serves is the question.
            if not frame.startswith(PLUMBING) and "(gunicorn/" not in frame and "(<frozen" not in frame:
                inclusive[frame] += samples
    return [(100 * n / total, frame) for frame, n in inclusive.most_common(top)]


def by_package(collapsed: Path) -> list[tuple[float, str]]:
    """Self time (the sampled leaf frame) by package: where the CPU goes or waits, summed over callers."""
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        leaf = stack.split(";")[-1]
        path = leaf.rpartition("(")[2].rstrip(")").split(":")[0]
        leaves[path.split("/")[0] if "/" in path else path] += samples
    return [(100 * n / total, package) for package, n in leaves.most_common()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--conn-max-age", type=int, default=None, help="override the server's CONN_MAX_AGE")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    fresh_database(DATABASE)
    token = api_token(DATABASE)
    extra_env = {} if args.conn_max_age is None else {"CONN_MAX_AGE": str(args.conn_max_age)}
    output = Path(tempfile.mkdtemp()) / "profile.txt"
    with (
        FakeStripe.start() as fake_stripe,
        SiteServer.start(
            database_name=DATABASE, stripe_api_base=fake_stripe.api_base, workers=1, extra_env=extra_env
        ) as site,
    ):
        stop = threading.Event()
        client = threading.Thread(target=SCENARIOS[args.scenario], args=(site, token, stop))
        client.start()
        time.sleep(1)
        worker = site.worker_pids()[0]
        subprocess.run(
            [Path(sys.executable).with_name("py-spy"), "record", "--pid", str(worker), "--duration",
             str(args.seconds), "--format", "raw", "--output", str(output), "--nonblocking"],
            check=True, capture_output=True,
        )  # fmt: skip
        stop.set()
        client.join()
    for share, frame in rank(output, args.top):
        print(f"{share:5.1f}%  {frame}")
    print("\nSelf time by package:")
    for share, package in by_package(output)[: args.top]:
        print(f"{share:5.1f}%  {package}")


if __name__ == "__main__":
    main()
