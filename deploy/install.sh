#!/bin/sh
# Install batchline into a virtualenv exactly as the image does, and as
# tests/e2e/test_wheel_install.py does: the locked dependencies (hash-checked, nothing
# resolved), then the wheel itself without dependencies, then a consistency check.
#
#   deploy/install.sh VENV_PYTHON LOCK_FILE WHEEL
#
# pip reads PIP_NO_INDEX / PIP_FIND_LINKS from the environment (offline installs).
set -eu
python="$1"
lock="$2"
wheel="$3"
"$python" -m pip install --require-hashes --no-deps -r "$lock"
"$python" -m pip install --no-deps "$wheel"
"$python" -m pip check
