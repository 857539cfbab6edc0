# Fresh machine: `make demo` (set up + run the demo), `make test` (set up + run the tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: venv test test-all demo clean-demo

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	cp requirements.txt $(STAMP)

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
