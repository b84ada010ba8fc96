# Quick start: `make demo` (simulator, no credentials), then `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
# uv from PATH if there is one, else a pinned copy bootstrapped into .tools/ with pip.
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
VENV := .venv
BIN := $(VENV)/bin

# uv compiles bytecode at install time (this environment sets PYTHONDONTWRITEBYTECODE=1,
# which otherwise makes every import about 2x slower) and never downloads a Python.
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON_DOWNLOADS := never
export DAGSTER_HOME := $(CURDIR)/.dagster
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: help setup demo run ui service doctor dagster-home sql export verify status repair browser postgres-server simulator test lint typecheck bench check

# What the targets write (the data root, the warehouse, Dagster's instance in DAGSTER_HOME) is
# readable by you only: files 0600, folders 0700. chmod also tightens what older versions left.
PRIVATE = umask 077 && mkdir -p "$(DAGSTER_HOME)" && chmod -R go= "$(DAGSTER_HOME)" &&

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: $(VENV)/.synced ## create .venv from uv.lock

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked
	@touch $@

demo: setup ## a month of simulated history, today's partition, and a query of the result
	$(PRIVATE) $(BIN)/python -m pipelines.commands.demo

# `make run` records its runs in the instance of the service when `make service` installed it for
# this checkout (its daemon's unit names the DAGSTER_HOME), so they show in the service's UI;
# else in .dagster/ with `make demo` and `make ui`.
SERVICE_UNIT = $(or $(XDG_CONFIG_HOME),$(HOME)/.config)/systemd/user/kis-balance-daemon.service
SERVICE_DAGSTER_HOME = $(shell [ -f "$(SERVICE_UNIT)" ] && awk -v repo="$(CURDIR)" \
	'/^WorkingDirectory=/ { dir = substr($$0, 18); gsub(/%%/, "%", dir) } \
	/^Environment="?DAGSTER_HOME=/ { sub(/^Environment="?DAGSTER_HOME=/, ""); sub(/"$$/, ""); \
	gsub(/%%/, "%"); home = $$0 } END { if (dir == repo) print home }' "$(SERVICE_UNIT)")
RUN_DAGSTER_HOME = $(or $(SERVICE_DAGSTER_HOME),$(DAGSTER_HOME))

# e.g. make run RUN_ARGS=--anyway, RUN_ARGS=2026-11-25, RUN_ARGS="2026-11-02...2026-11-06 -v";
# invalid settings stop it in one line (VERBOSE=1: with the traceback, and Dagster's log)
RUN_ARGS ?=
run: setup ## today's partition (dg launch), then what it did: accounts, net assets, warnings, report
	@$(BIN)/python -m pipelines.commands.check_settings $(if $(VERBOSE),--verbose)
	$(PRIVATE) DAGSTER_HOME="$(RUN_DAGSTER_HOME)" \
		$(BIN)/python -m pipelines.commands.run $(if $(VERBOSE),--verbose) $(RUN_ARGS)

dagster-home: ## the Dagster instance (DAGSTER_HOME) `make run` records its runs in
	@echo "$(RUN_DAGSTER_HOME)"

ui: setup ## the Dagster UI on http://127.0.0.1:3000 (dg dev, capture sensor included)
	$(PRIVATE) $(BIN)/dg dev -h 127.0.0.1 -p 3000

# e.g. make service SERVICE_ARGS="--port 3001 --dagster-home /srv/kis/dagster"
SERVICE_ARGS ?=
service: setup ## install systemd user units: dagster-daemon and dagster-webserver (docs/running.md)
	$(BIN)/python -m pipelines.commands.service $(SERVICE_ARGS)

# e.g. make doctor DOCTOR_ARGS=--online (one balance request per app key, cached tokens only)
DOCTOR_ARGS ?=
doctor: setup ## one screen: mode, server, app keys, data root and its kind, capture day, tokens
	@$(BIN)/python -m pipelines.commands.doctor $(DOCTOR_ARGS)

sql: setup ## a DuckDB shell on the warehouse, read-only (S3 access set up for an s3:// root)
	$(BIN)/python -m pipelines.commands.sql

# e.g. make export EXPORT_ARGS="net_assets_monthly --out ~/kis --format csv"
EXPORT_ARGS ?=
export: setup ## write views to CSV and Parquet in exports/ (exact decimals; EXPORT_ARGS, docs/querying.md)
	$(BIN)/python -m pipelines.commands.export $(EXPORT_ARGS)

verify: setup ## read every raw answer and Parquet file of KIS_DATA_ROOT; list what is damaged
	$(BIN)/python -m pipelines.commands.verify

# e.g. make status STATUS_ARGS="--days 10"; runs are read from the instance `make run` uses
STATUS_ARGS ?=
status: setup ## each account's state today and the last capture days (docs/notifications.md)
	$(PRIVATE) DAGSTER_HOME="$(RUN_DAGSTER_HOME)" \
		$(BIN)/python -m pipelines.commands.status $(STATUS_ARGS)

repair: setup ## rebuild what is damaged or missing (from raw), then verify (docs/verify-and-repair.md)
	$(BIN)/python -m pipelines.commands.repair

# Debian's chromium, and a Korean font (Noto CJK) so the report's Korean is not drawn as boxes;
# apt-get as root, or through sudo when it asks no password, else the command to run yourself.
KOREAN_FONT = fc-list ':lang=ko' 2>/dev/null | grep -q . || \
	dpkg-query -W -f='$${Status}' fonts-noto-cjk 2>/dev/null | grep -q 'ok installed'
browser: ## Debian's chromium and the Noto CJK font, for the report test and its Korean (CI does this)
	@missing=""; command -v chromium >/dev/null || missing=" chromium"; \
	{ $(KOREAN_FONT); } || missing="$$missing fonts-noto-cjk"; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then as=""; elif sudo -n true 2>/dev/null; then as="sudo -n"; else \
		echo "make browser: needs root to install$$missing; run: sudo apt-get install$$missing" >&2; \
		exit 1; fi; \
	for attempt in 1 2 3; do $$as apt-get update -qq && $$as env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq$$missing && break; \
		echo "apt-get failed (attempt $$attempt), retrying" >&2; sleep 10; done
	@command -v chromium >/dev/null && { $(KOREAN_FONT); }

postgres-server: ## Debian's PostgreSQL server binaries, for the deployment tests (root; CI does this)
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || for attempt in 1 2 3; do \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql \
		&& break; echo "apt-get failed (attempt $$attempt), retrying" >&2; sleep 10; done
	@ls /usr/lib/postgresql/*/bin/pg_ctl

simulator: setup ## a standalone KIS simulator on http://127.0.0.1:8765
	$(BIN)/kis-simulator --port 8765

test: setup ## the test suite (no network beyond loopback)
	$(BIN)/pytest

lint: setup ## ruff lint and format check, and the layers contract (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: setup ## mypy
	$(BIN)/mypy

bench: setup ## benchmarks; writes BENCHMARKS.md
	$(BIN)/python -m bench

check: lint typecheck test ## everything CI runs

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
