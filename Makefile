# The two commands: `make demo` (the main job) and `make test` (the whole test suite).
# Both create or refresh the virtualenvs first: .venv from requirements-dev.txt, .venv-fhir with the
# local FHIR server. Stamp files record what was installed, so a changed requirements file reinstalls.

PYTHON ?= python3
VENV := .venv
FHIR_VENV := .venv-fhir
SEKMET := sekmet-fhir==0.1.1
PYTEST_ARGS ?=
ARGS ?= --help

VENV_STAMP := $(VENV)/.installed
FHIR_STAMP := $(FHIR_VENV)/.installed-$(SEKMET)

.PHONY: test demo stack-up stack-down stack-status ops venv clean-venv

test: $(VENV_STAMP) $(FHIR_STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: $(VENV_STAMP) $(FHIR_STAMP)
	$(VENV)/bin/python -m tools.runtime.demo

# The whole product in the background (`dedup up --detach`): emulators, FHIR server, every function,
# the FHIR Subscriptions; state and .stack/env under .stack/. `dedup up` runs it in the foreground.
stack-up: $(VENV_STAMP) $(FHIR_STAMP)
	$(VENV)/bin/python -m ops up --detach

stack-down: $(VENV_STAMP)
	$(VENV)/bin/python -m ops down

stack-status: $(VENV_STAMP)
	$(VENV)/bin/python -m ops status

# The ops CLI on the local stack: make ops ARGS="report" (any `dedup` arguments; inside the checkout
# `dedup` finds a running stack's .stack/env by itself).
ops: $(VENV_STAMP)
	$(VENV)/bin/python -m ops $(ARGS)

venv: $(VENV_STAMP) $(FHIR_STAMP)

$(VENV_STAMP): requirements-dev.txt requirements-ops.txt requirements.txt requirements-workbench.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

$(FHIR_STAMP):
	test -x $(FHIR_VENV)/bin/python || $(PYTHON) -m venv $(FHIR_VENV)
	$(FHIR_VENV)/bin/python -m pip install -q --disable-pip-version-check '$(SEKMET)'
	rm -f $(FHIR_VENV)/.installed-*
	touch $@

clean-venv:
	rm -rf $(VENV) $(FHIR_VENV)
