# goroutines: build / test entry points.
#
#   make demo       run `python -m goroutines demo` in .venv (Python 3.11)
#   make test       ruff + mypy, then the suite three times, side by side: on 3.11 (.venv) and
#                   3.13 (.venv313) with the C accelerator, and on 3.11 with the pure-Python
#                   reference (GOROUTINES_PURE=1)
#   make bench      run `python -m goroutines bench` with the [bench] extra (and wrk, for W10,
#                   installed with apt-get when missing)
#   make stress     the stress/race/model tests (-m stress) for STRESS_TIME minutes (10) over
#                   many seeds and procs 1-8 (tools/stress.py; STRESS_ARGS passed on)
#   make soak       a mixed workload for SOAK_TIME minutes (10) at procs 4, watching RSS,
#                   threads and fds (tools/soak.py; SOAK_ARGS passed on)
#   make lint | typecheck | pytest | pytest-pure | test313 | info | clean
#
# Interpreters are found automatically; override with e.g. `make PY311=/path/to/python3.11`.
# Installs are stamped (.venv*/.stamp-*, rebuilt when pyproject.toml changes), so re-runs are quick.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules --no-print-directory

export PIP_DISABLE_PIP_VERSION_CHECK := 1
PIP_INSTALL := -m pip install --quiet

PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo "$$HOME/.pyenv")

# find_python VERSION CANDIDATES...: the real path of the first candidate that runs and is
# VERSION. (A pyenv shim such as `python3.13` can be on PATH yet fail, hence the check.)
define find_python
$(shell for c in $(2); do \
  "$$c" -c 'import sys; assert sys.version_info[:2] == tuple(map(int, "$(1)".split("."))); print(sys.executable)' 2>/dev/null && break; \
done; true)
endef

# Evaluated lazily, once (so `make clean` does not probe interpreters).
PY311 ?= $(eval PY311 := $(call find_python,3.11,python3.11 $(wildcard $(PYENV_ROOT)/versions/3.11*/bin/python)))$(PY311)
PY313 ?= $(eval PY313 := $(call find_python,3.13,$(wildcard $(PYENV_ROOT)/versions/3.13*/bin/python) python3.13))$(PY313)

VENV    := .venv
BUILD_FILES := pyproject.toml setup.py src/goroutines/_speedups.c
VENV313 := .venv313
LINT_DIRS := $(wildcard src tests examples benchmarks tools)

.PHONY: sysdeps demo test lint typecheck pytest pytest-pure test313 pytest313 test-side-by-side bench info clean stress soak

# ------------------------------------------------------------------ virtualenvs

$(VENV)/bin/python:
	@if [ -z "$(PY311)" ]; then echo "error: Python 3.11 not found (python3.11 on PATH or $(PYENV_ROOT)/versions/3.11*)" >&2; exit 1; fi
	"$(PY311)" -m venv $(VENV)

$(VENV313)/bin/python:
	@if [ -z "$(PY313)" ]; then echo "error: Python 3.13 not found" >&2; exit 1; fi
	"$(PY313)" -m venv $(VENV313)

# One stamp per (venv, extra); each is redone when the build changes (pyproject.toml,
# setup.py, or the C accelerator's source: `pip install -e .` compiles it in place).
$(VENV)/.stamp-base: $(BUILD_FILES) | $(VENV)/bin/python
	$(VENV)/bin/python $(PIP_INSTALL) -e .
	@touch $@

$(VENV)/.stamp-dev: $(BUILD_FILES) | $(VENV)/bin/python
	$(VENV)/bin/python $(PIP_INSTALL) -e '.[dev]'
	@touch $@

$(VENV)/.stamp-bench: $(BUILD_FILES) | $(VENV)/bin/python
	$(VENV)/bin/python $(PIP_INSTALL) -e '.[bench]'
	@touch $@

$(VENV313)/.stamp-dev: $(BUILD_FILES) | $(VENV313)/bin/python
	$(VENV313)/bin/python $(PIP_INSTALL) -e '.[dev]'
	@touch $@

# ------------------------------------------------------------------ targets

demo: $(VENV)/.stamp-base
	$(VENV)/bin/python -m goroutines demo

test: sysdeps lint typecheck test-side-by-side

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check $(LINT_DIRS)

typecheck: $(VENV)/.stamp-dev
	$(VENV)/bin/mypy

# Debian packages the tests use as real peers (openssl: s_server/s_client for
# gr.net.tls), installed with apt-get when missing.
TEST_SYSDEPS := openssl
sysdeps:
	@missing=""; for p in $(TEST_SYSDEPS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	fi

# GOROUTINES_TEST_MODE makes the run fail at once if that mode is not the one in use
# (a C accelerator that did not build must not pass as a run of it: tests/conftest.py).
pytest: $(VENV)/.stamp-dev
	GOROUTINES_TEST_MODE=c $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

pytest-pure: $(VENV)/.stamp-dev
	GOROUTINES_PURE=1 GOROUTINES_TEST_MODE=pure $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The same pytest run on Python 3.13; skipped (not failed) when 3.13 is absent.
test313:
	@if [ -z "$(PY313)" ]; then \
	  echo "Python 3.13 not found, skipping the 3.13 run"; \
	else \
	  $(MAKE) pytest313 PY313="$(PY313)"; \
	fi

pytest313: $(VENV313)/.stamp-dev
	GOROUTINES_TEST_MODE=c $(VENV313)/bin/python -m pytest $(PYTEST_ARGS)

# The three runs side by side (each suite waits on timers, sockets and child
# processes more than it computes: three on two cores take 2.5 minutes, where
# one after the other took 4), each printed whole when all are done; fails
# if any failed.
test-side-by-side: $(VENV)/.stamp-dev
	@$(if $(PY313),$(MAKE) $(VENV313)/.stamp-dev PY313="$(PY313)",true)
	@mkdir -p .test-logs; set +e; \
	$(MAKE) pytest > .test-logs/c.log 2>&1 & a=$$!; \
	$(MAKE) test313 > .test-logs/test313.log 2>&1 & b=$$!; \
	$(MAKE) pytest-pure > .test-logs/pure.log 2>&1 & c=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; wait $$c; rc=$$?; \
	echo "== the suite on 3.11 (C accelerator): exit $$ra"; cat .test-logs/c.log; \
	echo "== the suite on 3.13 (C accelerator): exit $$rb"; cat .test-logs/test313.log; \
	echo "== the suite on 3.11, pure Python (GOROUTINES_PURE=1): exit $$rc"; cat .test-logs/pure.log; \
	exit $$(( ra || rb || rc ))

# The whole suite takes about 7 minutes on 2 cores; pass options with e.g.
# `make bench BENCH_ARGS="--workloads W1,W4 --repeat 5"` (see benchmarks/README.md).
# W10 loads its HTTP servers with wrk, and W12 counts instructions with valgrind (Debian
# packages), installed with apt-get when missing; if that fails the suite still runs,
# with W10 or W12 N/A.
bench: $(VENV)/.stamp-bench
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v valgrind >/dev/null || missing="$$missing valgrind"; \
	[ -z "$$missing" ] || { \
	  echo "installing$$missing (apt-get) for W10 and W12"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  { $$SUDO apt-get update -qq && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	  || echo "could not install$$missing (apt-get failed or is missing): W10/W12 will be N/A"; \
	}
	$(VENV)/bin/python -m goroutines bench $(BENCH_ARGS)

# Stress and soak run on the 3.11 venv, or on another interpreter given on the command
# line: `make stress PYTHON=.venv313/bin/python` (that venv is made/updated first).
ifneq ($(origin PYTHON),command line)
PYTHON := $(VENV)/bin/python
endif
PYTHON_STAMP = $(if $(findstring $(VENV313)/,$(PYTHON)),$(VENV313)/.stamp-dev,$(VENV)/.stamp-dev)
STRESS_TIME ?= 10
SOAK_TIME ?= 10

# Prints the master seed first, a replay command for every failure, a summary last;
# failed rounds' output goes to .stress/. e.g. `make stress STRESS_TIME=60`,
# `make stress STRESS_ARGS="--seed 1234 --procs 1,2"` (see tools/stress.py --help).
stress: $(PYTHON_STAMP)
	$(PYTHON) tools/stress.py --minutes $(STRESS_TIME) $(STRESS_ARGS)

# Samples RSS, threads, fds and goroutines every 5 s (also to .soak/*.csv) and fails on
# any lost value or growth. e.g. `make soak SOAK_TIME=1 SOAK_ARGS="--procs 8"`.
soak: $(PYTHON_STAMP)
	$(PYTHON) tools/soak.py --minutes $(SOAK_TIME) $(SOAK_ARGS)

info:
	@echo "PYENV_ROOT = $(PYENV_ROOT)"
	@echo "PY311      = $(if $(PY311),$(PY311) ($$("$(PY311)" -V 2>&1)),not found)"
	@echo "PY313      = $(if $(PY313),$(PY313) ($$("$(PY313)" -V 2>&1)),not found)"

clean:
	rm -rf $(VENV) $(VENV313) build dist .mypy_cache .ruff_cache .pytest_cache .hypothesis .test-logs src/goroutines/*.so
	find src tests -depth \( -name __pycache__ -o -name '*.egg-info' \) -exec rm -rf {} + 2>/dev/null || true
