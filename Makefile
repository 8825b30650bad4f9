# The two commands of the README: `make run` (embedded default) and `make test` (whole suite).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: run test setup setup-dev lint smoke docs-errors

run: setup
	$(VENV)/bin/gru serve

test: setup-dev
	$(VENV)/bin/ruff check gru tests scripts wsgi.py gunicorn.conf.py
	$(VENV)/bin/pytest $(PYTEST_ARGS)

setup:
	scripts/setup.sh runtime

setup-dev:
	scripts/setup.sh dev

lint: setup-dev
	$(VENV)/bin/ruff check gru tests scripts wsgi.py gunicorn.conf.py

smoke: setup
	scripts/ticket_smoke.sh http://127.0.0.1:30000

docs-errors: setup
	$(VENV)/bin/python -m gru.errors
