# trackflow — developer entry points.
#
# Needs only GNU make and python3 (>= 3.11, with the venv module) plus access to PyPI.
# Every target bootstraps the project virtualenv in $(VENV) on first use and reinstalls
# the project into it whenever pyproject.toml changes.
#
#   make up      run the local stack (trackflow up $(ARGS); ARGS defaults to --demo)
#   make test    ruff check, ruff format --check, mypy, pytest — stops at the first failure
#   make lint    ruff check + ruff format --check
#   make fmt     ruff format + ruff check --fix
#   make clean   remove .trackflow/ and tool caches (keeps $(VENV))
#   make record-histories   re-record the replay fixtures in tests/histories/ (SCENARIOS=... for some)

PYTHON ?= python3
VENV ?= .venv
ARGS ?= --demo
PYTEST_ARGS ?=
SCENARIOS ?=
MYPY_TARGETS ?= trackflow storage workflows activities starters workers tests bench

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help venv up test lint fmt typecheck bench bench-e2e bench-in-flight record-histories clean

help:
	@echo "make up         run trackflow locally (ARGS='$(ARGS)')"
	@echo "make test       lint, format check, mypy, then pytest (PYTEST_ARGS='$(PYTEST_ARGS)')"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make fmt        ruff format + ruff check --fix"
	@echo "make typecheck  mypy $(MYPY_TARGETS)"
	@echo "make bench      speed goals of the pure core (python -m bench)"
	@echo "make bench-e2e  trackflow vs bare Temporal end to end (< 10 min; BENCH_ARGS=--quick: 1 min)"
	@echo "make bench-in-flight  10,000 shipments on their timers: RSS, disk, GET p99 (BENCH_ARGS=--quick: 500)"
	@echo "make record-histories  re-record tests/histories/ from the current workflows (SCENARIOS='$(SCENARIOS)')"
	@echo "make clean      remove .trackflow/ and caches (not $(VENV))"

# --- virtualenv bootstrap ---------------------------------------------------------------

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || { \
	  echo "error: trackflow needs Python >= 3.11; '$(PYTHON)' is $$($(PYTHON) --version 2>&1)." >&2; \
	  echo "       Run e.g. 'make PYTHON=python3.11 ...'." >&2; \
	  exit 1; }
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' cannot create virtual environments (the venv/ensurepip modules are missing)." >&2; \
	  echo "       On Debian/Ubuntu install them with:  apt-get install python3-venv" >&2; \
	  exit 1; }
	@rm -rf $(VENV)
	@echo "first run: creating $(VENV) and installing trackflow (about a minute)"
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "error: '$(PYTHON) -m venv $(VENV)' failed. On Debian/Ubuntu: apt-get install python3-venv" >&2; \
	  rm -rf $(VENV); exit 1; }

# Quiet on success; pip's own output is shown only when it fails.
$(STAMP): pyproject.toml $(BIN)/python
	@echo "installing trackflow and its dependencies into $(VENV)…"
	@PIP_DISABLE_PIP_VERSION_CHECK=1 $(BIN)/python -m pip install -q -e '.[dev]' > $(VENV)/install.log 2>&1 || { \
	  cat $(VENV)/install.log >&2; echo "error: installing into $(VENV) failed (log above)" >&2; exit 1; }
	@touch $@
	@echo "installed. The CLI is $(BIN)/trackflow (or run 'source $(BIN)/activate' to have 'trackflow' on PATH)."

venv: $(STAMP)

# The browser test (tests/test_api_docs_browser.py) drives Debian's chromium via chromedriver.
.PHONY: browser
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium and chromium-driver (for the browser test)…"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    { apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } >/dev/null; \
	  else \
	    echo "error: the browser test needs chromium and chromedriver; as root: apt-get install chromium chromium-driver" >&2; \
	    exit 1; \
	  fi; }

# --- entry points -----------------------------------------------------------------------

up: $(STAMP)
	@$(BIN)/trackflow up $(ARGS)

# One recipe line per gate: make stops at the first one that fails.
test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_TARGETS)
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(MYPY_TARGETS)

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

# trackflow vs a bare-Temporal workflow of the same shape, over HTTP, on its own dev server;
# writes bench/results/e2e-<time>.json and bench/RESULTS.md (bench/e2e.py). Not a test.
BENCH_ARGS ?=
bench-e2e: $(STAMP)
	$(BIN)/python -m bench.e2e $(BENCH_ARGS)

# 10,000 trackflow shipments in flight on their timers (one worker, one API, its own dev
# server): worker/API/server RSS, disk per shipment, GET p99; writes
# bench/results/in-flight-<time>.json and its section of bench/RESULTS.md (bench/in_flight.py).
bench-in-flight: $(STAMP)
	$(BIN)/python -m bench.in_flight $(BENCH_ARGS)

# Replay fixtures and command fingerprints (README: Replay guard); starts its own dev server.
record-histories: $(STAMP)
	$(BIN)/python -m tests.histories.record $(SCENARIOS)

clean:
	rm -rf .trackflow .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage htmlcov
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
