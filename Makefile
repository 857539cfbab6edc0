# Fresh machine: `make demo` (set up + run the demo), `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: venv test test-all demo clean-demo

# requirements-dev.txt includes requirements.txt (runtime pins) and adds what only the tests, the
# demo and the benchmarks use; `pip install -e . --no-deps` installs this project's packages
# (pyproject.toml) so that scripts/*.py import them from any folder.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	cat requirements.txt requirements-dev.txt > $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m ""

PRETRAINED ?= 0

demo: $(STAMP)
	PY=$(PY) PRETRAINED=$(PRETRAINED) bash scripts/demo.sh

clean-demo:
	rm -rf demo_out
