# Two commands on a fresh machine: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
# pyenv's interpreter when present (the build machines), else whatever python3.12 is on PATH.
PYTHON ?= $(shell command -v $(HOME)/.pyenv/versions/$(PYTHON_VERSION)/bin/python || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test venv migrate seed schedules staff-groups lint bench db-stop clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

.env:
	cp .env.example .env

venv: $(VENV)/.installed .env

migrate: venv
	$(PY) manage.py migrate --no-input
	$(PY) manage.py createcachetable
	$(PY) manage.py compilemessages --ignore=.venv -v0

seed: migrate
	$(PY) manage.py seed_demo

schedules: migrate
	$(PY) manage.py setup_schedules

# The staff groups (reviewer, risk, finance, support) and their permissions, from bnpl/staff_groups.py.
staff-groups: migrate
	$(PY) manage.py setup_staff_groups

# Web server and django-q2 cluster together; Ctrl-C stops both.
run: seed schedules staff-groups
	@echo "Platform on http://$(HOST):$(PORT)/  (admin: /admin/, health: /healthz). Ctrl-C stops."
	@# The web server runs in the foreground so that Ctrl-C reaches it (a background job of a
	@# non-interactive shell ignores SIGINT); on exit the cluster gets SIGTERM on its main process only
	@# (SIGTERM to django-q2's whole process group can leave its parent waiting on a dead sentinel).
	@$(PY) manage.py qcluster & QPID=$$!; \
	trap 'kill -TERM $$QPID 2>/dev/null; wait $$QPID' EXIT; \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

test: venv
	$(PY) manage.py compilemessages --ignore=.venv -v0
	$(PY) -m pytest $(PYTEST_ARGS)

# Every benchmark with the quick sizes (BENCH_SCALE=full for the issues' sizes); bench/results/latest.json.
bench: migrate
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)  # bench/http_load.py
	$(PY) bench/run_all.py --scale $(or $(BENCH_SCALE),quick)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

db-stop: venv
	$(PY) -c "from pathlib import Path; from bnpl.embedded_db import stop; stop(Path('.data/pg').resolve())"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
