#!/usr/bin/env bash
# Installs what the tests need, then runs the linters and the whole test suite: the
# fast unit layer (tests/unit, pure, seconds) first, then the tests with real servers.
# Usage: scripts/test.sh [pytest options, e.g. -x or -k name; they apply to both runs]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e '.[test]'

# The tests start their own redis-server processes on free ports.
if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is needed for the tests: install it (e.g. apt-get install redis-server)" >&2
        exit 1
    fi
fi
# The web console's browser tests drive Debian's chromium through Playwright (never
# `playwright install`: it downloads a browser).
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq chromium >/dev/null
    else
        echo "chromium not found: the console's browser tests will be skipped" \
             "(install it, e.g. apt-get install chromium)" >&2
    fi
fi
# The @upstash/redis SDK test runs under Node.js.
if command -v npm >/dev/null; then
    npm ci --prefix tests/js --no-audit --no-fund --silent
else
    echo "npm not found: the @upstash/redis SDK test will be skipped" >&2
fi

# The AWS template checks in tests/test_template.py run cfn-lint and the SAM CLI, kept in
# their own venv (.venv-sam, Python 3.13 like the Lambda runtime); installed once, reused.
if ! scripts/check_template.sh --install; then
    if [ -n "${CI:-}" ]; then
        exit 1
    fi
    echo "cfn-lint/SAM CLI not installed: tests/test_template.py will skip their checks" >&2
fi

.venv/bin/ruff check .
.venv/bin/mypy
# A -k that selects nothing among the unit tests (pytest's exit 5) is not a failure.
.venv/bin/pytest -q tests/unit "$@" || [ $? -eq 5 ]
exec .venv/bin/pytest -q --ignore=tests/unit "$@"
