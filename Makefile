# Distribution operations portal — `make run` starts everything, `make test` runs the suite.
SHELL := /bin/bash
PYTHON_SYSTEM ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell sha1sum requirements.txt | cut -c1-12)
STAMP := $(VENV)/.installed-$(REQ_HASH)

.PHONY: install run test bench lint format services stop-services browser clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

## Chromium for the browser tests (Debian's package; Playwright drives it, never downloads one)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser tests ..."; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed; browser tests will be skipped"; }

run: install
	$(PY) -m portal.run

test: install browser
	$(PY) -m portal.testrun $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

services: install
	$(PY) -m portal.embedded start

stop-services: install
	$(PY) -m portal.embedded stop

clean:
	rm -rf $(VENV) var/staticfiles .pytest_cache .mypy_cache
