#!/usr/bin/env bash
# Runs the openai-SDK end-to-end test of flamingo-server's HTTP API (openai_sdk_test.mjs).
# Needs Node 18.19+ (Debian 12's nodejs) and `npm ci` run in this folder first.
# Environment: FLAMINGO_SERVER (the server binary), FLAMINGO_MODEL (the model it serves),
# FLAMINGO_IMAGE_DIR (the test images).
# Exit 77 (skipped) when node or node_modules is missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if ! command -v node >/dev/null 2>&1; then
  echo "SKIP: node is not installed (Debian: apt-get install nodejs npm; see scripts/install-deps.sh)" >&2
  exit 77
fi
if [ ! -d node_modules/openai ]; then
  echo "SKIP: $(pwd)/node_modules is missing: run scripts/install-deps.sh" >&2
  echo "      (or 'npm ci' in $(pwd)) to install the pinned openai SDK" >&2
  exit 77
fi
exec node --test openai_sdk_test.mjs
