# Every target sets up what it needs: a venv in .venv with the project installed (editable) from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 50051
DB     ?= ./voltorch.db

.PHONY: setup run serve test protos protos-check lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The headline: start a server on the embedded SQLite default and run the complete workflow with live progress.
run: $(STAMP)
	$(PY) -m voltorch_server.demo --db $(DB)

serve: $(STAMP)
	$(VENV)/bin/voltorch serve --host $(HOST) --port $(PORT) --db $(DB)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) -m voltorch_server._protogen sdk

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk server tests bench
	$(VENV)/bin/ruff format --check sdk server tests bench

# The bench extra adds the peers measured beside voltorch (LangGraph).
$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.bench-installed

bench: $(VENV)/.bench-installed
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
