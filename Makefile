# The two set-up commands of the README. Both are idempotent and work from a fresh clone:
# they create .venv when it is missing and reinstall only when pyproject.toml changed.
#   make run   - the main job: install the package with its docs extra, then `v4runtime up`
#   make test  - install every extra, then run the whole suite (unit tests, docs fences, strict site build)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x"`.
PYTEST_ARGS ?=
# What the suite covers: the tests and every docs page (their fences).
TEST_PATHS ?= tests docs

.PHONY: run test

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)

# Stamps record a finished install; they are older than pyproject.toml when it changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e '.[docs]'
	touch $@

# torch first and pinned: this exact version installs a CPU build quickly; a range could pull
# a multi-GB CUDA build (the runtime itself never imports torch).
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/v4runtime up

# One pytest run: unit tests, docs fences (pytest-markdown-docs for Python, our harness for
# bash/console and indented fences), the fence coverage gate and the strict site build.
# Any non-zero pytest status fails the target, including 5 (nothing collected).
test: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m pytest --markdown-docs --markdown-docs-syntax=superfences \
		--timeout=600 $(PYTEST_ARGS) $(TEST_PATHS)
