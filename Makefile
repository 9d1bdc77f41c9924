# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PY := .venv/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1

.PHONY: run test setup setup-dev

run: setup
	$(PY) app.py $(ARGS)

test: setup-dev
	$(PY) -m pytest $(ARGS)

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh dev
