"""
A PostgreSQL cluster of one's own, for the scenarios that restart the database in
the middle of the work: never the machine's shared cluster, which others' tests
are using. Development, tests and benchmarks only.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from devkit.processes import free_port


class PrivateCluster:
    """
    A PostgreSQL cluster of its own, in a temporary directory on a
    free port, that it may stop and restart (never the machine's shared cluster,
    which others' tests are using). Runs as the postgres user.

        with PrivateCluster.start() as cluster:
            cluster.url("dbname"); cluster.restart()
    """

    bin_dir = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port

    @classmethod
    def start(cls) -> PrivateCluster:
        data_dir = Path(tempfile.mkdtemp(prefix="pgcluster-"))
        shutil.chown(data_dir, "postgres", "postgres")
        cluster = cls(data_dir, free_port())
        cluster._as_postgres("initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres", "--no-sync")
        cluster._pg_ctl("start")
        return cluster

    def url(self, database_name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database_name}"

    def restart(self) -> float:
        """Stop at once, as a crash would (no checkpoint: recovery at start), and start again; answers seconds down."""
        started = time.perf_counter()
        self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        self._pg_ctl("start")
        return time.perf_counter() - started

    def stop(self) -> None:
        try:
            self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        log = self.data_dir / "server.log"
        self._as_postgres("pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(log), "-w", action)

    def _as_postgres(self, program: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin_dir / program), *args],
            check=True,
            capture_output=True,
            cwd=self.data_dir,
        )

    def __enter__(self) -> PrivateCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
