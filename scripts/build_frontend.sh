#!/usr/bin/env bash
# Rebuild the document editor's frontend (page/document_editor/frontend -> templates/, which ships in
# the repository so `make run` needs no node) and record which sources it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
front=page/document_editor/frontend
command -v npm >/dev/null || { echo "build_frontend: needs node 20 and npm" >&2; exit 1; }
echo "build_frontend: installing the pinned npm packages (package-lock.json)..." >&2
(cd "$front" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$front" && npx tsc --noEmit -p tsconfig.json && npx vite build --config build.config.mjs --logLevel warn)
.venv/bin/python -m page.document_editor.sources --write >/dev/null
echo "build_frontend: built $(du -sh page/document_editor/templates/component | cut -f1) into page/document_editor/templates" >&2
