#!/usr/bin/env bash
# Run the reliability tests and write docs/reliability.md from their results.
# Usage: bash scripts/reliability.sh   (about 10 minutes on 2 cores; extra args go to pytest)
set -euo pipefail
cd "$(dirname "$0")/.."
EDGECL_RELIABILITY_DOC="$PWD/docs/reliability.md" .venv/bin/python -m pytest -q \
  tests/test_crash.py tests/test_train.py tests/test_cloud_faults.py tests/test_cloud_openai.py tests/test_daemon.py \
  tests/test_chat.py tests/test_storage.py tests/test_store.py tests/test_bad_input.py \
  tests/test_sandbox.py tests/test_adapt.py "$@"
echo "wrote docs/reliability.md"
