# Pintu: `make install`, `make test`, `make demo`, `make bench`.
# Every target installs what it needs first, so a fresh clone needs only `make test`.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
CHECK_PYTHON := $(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pintu needs Python 3.11 or newer")'
# System packages: the zbar library for pyzbar and the MQTT broker the demo and the tests
# start; for the tests also the browser the dashboard tests drive, systemd-analyze to
# check the unit files, and npm for axe-core, the accessibility checker the browser tests
# run in every page.
RUN_APT_PACKAGES := libzbar0 mosquitto mosquitto-clients
# npm: Debian's nodejs and npm packages, unless an npm is there already (NodeSource's
# nodejs brings its own, and Debian's npm package conflicts with it).
NPM_APT_PACKAGES := $(if $(shell command -v npm),,nodejs npm)
APT_PACKAGES := $(RUN_APT_PACKAGES) chromium systemd $(NPM_APT_PACKAGES)
AXE_VERSION := 4.11.0
AXE := $(VENV)/axe/node_modules/axe-core/axe.min.js

.PHONY: install system-packages test lint typecheck unit catalogs demo bench fuzz soak clean

install: system-packages $(STAMP) $(AXE)

system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then \
	  echo "pintu: please install these system packages with your package manager:$$missing" >&2; exit 0; \
	fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "pintu: installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "pintu: missing system packages; run:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends$$missing" >&2; \
	fi

$(STAMP): pyproject.toml
	@$(CHECK_PYTHON)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# axe-core from the npm registry, into the virtualenv's folder (tests/hub/axe.py reads it).
$(AXE):
	npm install --no-audit --no-fund --no-save --prefix $(VENV)/axe axe-core@$(AXE_VERSION)
	test -f $(AXE)

# What running Pintu needs (the node and hub extras), without the development tools: the
# demo's first start on a fresh clone is that much sooner. A full install serves as well.
$(RUN_STAMP): pyproject.toml
	@$(CHECK_PYTHON)
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then exit 0; fi; \
	  set -x; test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	  $(BIN)/python -m pip install --quiet -e '.[node,hub]'
	touch $(RUN_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint typecheck unit

# The translation catalogs: every marked string of the code, templates and the dashboard's
# script into runtime/locale/pintu.pot, merged into each language's .po (then translate
# what is new; tests/i18n/test_catalogs.py fails while anything is missing or fuzzy).
LOCALE := runtime/locale

catalogs: install
	$(BIN)/pybabel extract -F babel.cfg --add-location=file --sort-by-file \
	  --no-wrap --project=Pintu --copyright-holder="Pintu contributors" \
	  -o $(LOCALE)/pintu.pot .
	for lang in id en; do \
	  $(BIN)/pybabel update --no-wrap -D pintu -l $$lang -i $(LOCALE)/pintu.pot -d $(LOCALE) \
	    --init-missing || exit 1; \
	done

# The demo needs no browser or development tools: it installs only what it runs.
demo: APT_PACKAGES := $(RUN_APT_PACKAGES)
demo: system-packages $(RUN_STAMP)
	$(BIN)/pintu demo

# Each benchmark prints its table and rewrites its section of docs/benchmarks.md.
# `event_pages` and `workers` need PostgreSQL (PINTU_BENCH_PG_DSN, or the local server) and
# come last.
BENCHES := decode latency memory service_memory ingest dashboard phone registry sync journal event_pages workers
# These run again with --tls, a plain broker beside a TLS one, into sections of their own.
TLS_BENCHES := latency ingest

bench: install
	for b in $(TLS_BENCHES); do $(BIN)/python -m bench.$$b --tls --write || exit 1; done
	for b in $(BENCHES); do $(BIN)/python -m bench.$$b --write || exit 1; done

# Hostile input at full length (docs/reliability.md, "Hostile input"): 100,000 generated
# pass texts through hypothesis and 100,000 through atheris, and the hub's and the
# registry's APIs under schemathesis with many examples per operation.
FUZZ_EXAMPLES ?= 17000
API_EXAMPLES ?= 50

fuzz: install
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	PINTU_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider --timeout=3600 \
	  --hypothesis-show-statistics tests/hostile/test_fuzz_passes.py
	$(BIN)/python tests/hostile/fuzz_passes.py -runs=100000 -seed=1
	PINTU_API_EXAMPLES=$(API_EXAMPLES) $(BIN)/pytest -q -o log_cli=true --log-cli-level=WARNING \
	  --timeout=3600 tests/hostile/test_api_schemathesis.py

# Several doors at a turnstile's peak with faults at random times; rewrites the Soak section
# of docs/reliability.md. Not part of `make test`: SOAK_MINUTES=1 make soak for a smoke run.
SOAK_MINUTES ?= 30

soak: install
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) --write

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
