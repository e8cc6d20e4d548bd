#!/bin/sh
# Make benchmarks/peer/.venv, the peer's own virtualenv (dj-stripe and its pins),
# apart from the site's: `sh benchmarks/peer/setup.sh` (PYTHON: the interpreter, python3 by default).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
