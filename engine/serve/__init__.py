"""The engine as an HTTP service (`python -m engine serve`): `app.create_app(model)` builds it.

Modules: `app` (routes, error shapes, metrics middleware), `service` (the scheduler and the edits
in flight), `edits` (/v1/edits), `completions` (OpenAI /v1/completions, /v1/models), `wire` (the
JSON both ends read: steps, results, the tokenizer), `metrics`, `streams`, `command` (the CLI).
Importing this package loads no web framework; the page's client imports `wire` alone.
"""
