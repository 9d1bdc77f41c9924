# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PY := .venv/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

.PHONY: run test lint setup setup-dev frontend

run: setup
	$(PY) app.py $(ARGS)

test: lint
	$(PY) -m pytest $(ARGS)

# ruff over the repository, mypy over engine/ and editor/ (settings in pyproject.toml).
lint: setup-dev
	$(PY) -m ruff check .
	$(PY) -m mypy

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh dev

# Rebuild the document editor's frontend (Svelte + CodeMirror; needs node 20 and npm). The build
# ships in the repository, so `make run` does not need this.
frontend:
	bash scripts/build_frontend.sh
