# tweetflow — the two commands a new user needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TWEETFLOW := $(BIN)/tweetflow
PYTEST_ARGS ?=

.PHONY: setup demo test lint stack-up stack-down status bench proto clean

# A virtualenv with the locked dependencies (uv.lock), installed by uv from PyPI.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv

$(VENV)/.synced: pyproject.toml uv.lock | $(BIN)/uv
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --python $(BIN)/python
	touch $@

setup: $(VENV)/.synced

stack-up: setup
	$(TWEETFLOW) stack up

stack-down:
	-$(TWEETFLOW) stack down

status:
	$(TWEETFLOW) stack status

# The whole platform on sample data; leaves the stack and UIs running.
# `make demo SOURCE=jetstream`: live posts from Bluesky's Jetstream instead (needs a network).
demo: stack-up
	$(BIN)/python -m tweetflow.app.demo $(if $(SOURCE),--source $(SOURCE))

# Unit and integration tests against the real local stack, which is stopped afterwards.
# A stack that was already running (say, `make demo`'s) is left running.
test: setup
	@was_up=0; $(TWEETFLOW) stack status >/dev/null 2>&1 && was_up=1; \
	$(TWEETFLOW) stack up || exit 1; \
	rc=0; $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	[ $$was_up = 1 ] || $(TWEETFLOW) stack down; \
	exit $$rc

lint: setup
	$(BIN)/ruff check .

bench: stack-up
	$(TWEETFLOW) bench --quick

proto: setup
	$(BIN)/python proto/generate.py

clean: stack-down
	rm -rf .tweetflow reports
