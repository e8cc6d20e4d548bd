"""
`make run PORT=... STRIPE_PORT=...`: the ports given are the ports used, whatever an
older .env says, and `make` says truthfully whether it wrote .env. Run on a copy of
the Makefile in a temporary folder, with a stand-in python that records how each
process was started (its arguments and the Stripe addresses in its environment).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OLD_ENV = "DEBUG=true\nSTRIPE_API_BASE=http://127.0.0.1:8420\nSTRIPE_JS_URL=http://127.0.0.1:8420/js.stripe.com/v3/\n"
RECORDING_PYTHON = """#!/bin/sh
log="$(dirname "$0")/started.log"
echo "$* | STRIPE_API_BASE=$STRIPE_API_BASE | STRIPE_JS_URL=$STRIPE_JS_URL" >> "$log"
# The site's server: stay up until the local Stripe (started in the background) has been recorded.
case "$*" in *runserver*)
  for i in $(seq 50); do grep -q localstripe "$log" && break; sleep 0.1; done;;
esac
"""

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def project(tmp_path):
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDING_PYTHON)
    python.chmod(0o755)
    return tmp_path


def make(project, *args):
    return subprocess.run(
        ["make", "--no-print-directory", "VENV=venv", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(project) -> list[str]:
    return (project / "venv" / "bin" / "started.log").read_text().splitlines()


def test_the_ports_given_are_the_ports_used_despite_an_old_env_file(project):
    (project / ".env").write_text(OLD_ENV)

    result = make(project, "serve", "PORT=18001", "STRIPE_PORT=18421")

    assert result.returncode == 0, result.stderr
    stripe = next(line for line in started(project) if "localstripe" in line)
    site = next(line for line in started(project) if "runserver" in line)
    assert "--port 18421 --site-url http://127.0.0.1:18001" in stripe
    # The demo users' message names the site where it runs.
    assert any("create_demo_users --site-url http://127.0.0.1:18001" in line for line in started(project))
    assert "runserver 127.0.0.1:18001" in site
    for line in (stripe, site):
        assert "STRIPE_API_BASE=http://127.0.0.1:18421 " in line
        assert "STRIPE_JS_URL=http://127.0.0.1:18421/js.stripe.com/v3/" in line
    assert "8420" not in "\n".join(started(project))


def test_run_ends_by_serving_on_those_ports(project):
    """`run` (setup, .env, database, then serve) passes the ports on to `serve`."""
    result = make(project, "-n", "run", "PORT=18001", "STRIPE_PORT=18421")

    [site] = [line for line in result.stdout.splitlines() if "runserver" in line]
    assert "STRIPE_API_BASE=http://127.0.0.1:18421 " in site
    assert "runserver 127.0.0.1:18001" in site


def test_an_existing_env_file_is_kept_and_make_says_so(project):
    (project / ".env").write_text(OLD_ENV)

    result = make(project, "env", "STRIPE_PORT=18421")

    assert result.returncode == 0, result.stderr
    assert "Wrote" not in result.stdout
    assert "Kept the existing .env" in result.stdout
    assert (project / ".env").read_text() == OLD_ENV


def test_without_an_env_file_one_is_written_for_the_ports_given(project):
    result = make(project, "env", "STRIPE_PORT=18421")

    assert result.returncode == 0, result.stderr
    assert "Wrote .env" in result.stdout
    written = (project / ".env").read_text()
    assert "STRIPE_API_BASE=http://127.0.0.1:18421\n" in written
    assert "DEBUG=true\n" in written
