# Every target sets up what it needs: a venv in .venv with the project installed (editable) from
# pyproject.toml, with the extras the target uses: `server` to run it, `dev` (server + cli + tools) to
# test, lint and measure it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 50051
DB     ?= ./voltorch.db

.PHONY: setup run serve test protos protos-check lint typecheck bench clean

setup: $(VENV)/.installed-dev

# One stamp per extra: `make run` on a clean clone installs the server's dependencies, not the tools.
$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

# The headline: start a server on the embedded SQLite default and run the complete workflow with live progress.
run: $(VENV)/.installed-server
	$(PY) -m voltorch_server.demo --db $(DB)

serve: $(VENV)/.installed-server
	$(VENV)/bin/voltorch serve --host $(HOST) --port $(PORT) --db $(DB)

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

protos: $(VENV)/.installed-dev
	$(PY) -m voltorch_server._protogen sdk

# Regenerates into a temporary folder and fails if the committed code in sdk/voltorch/v1 differs.
protos-check: $(VENV)/.installed-dev
	$(PY) -m voltorch_server._protogen --check

lint: $(VENV)/.installed-dev protos-check
	$(VENV)/bin/ruff check sdk server tests bench
	$(VENV)/bin/ruff format --check sdk server tests bench

# Not part of lint yet: the tree does not type-check cleanly (see CONTRIBUTING.md).
typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy sdk/voltorch server/voltorch_server tests

bench: $(VENV)/.installed-dev
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info
