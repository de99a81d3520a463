# Every target sets up what it needs: a venv in .venv with the project installed (editable) from
# pyproject.toml, with the extras the target uses: `server` to run it, `dev` (server + cli + tools) to
# test, lint and measure it, `bench` for the peers measured beside it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 50051
DB     ?= ./voltorch.db
UI_PORT ?= 8233

.PHONY: setup run cluster serve shell test protos protos-check lint proto-lint typecheck npm bench clean

setup: $(VENV)/.installed-dev

# Node.js parts (examples/node, buf in tools/buf): `npm ci` from the committed package-lock.json into each
# folder's node_modules (git-ignored), again only when the lockfile is newer than the install. Without node
# they are skipped here; the tests that need them then skip locally and fail under CI=true.
NODE       := $(shell command -v node 2>/dev/null)
NPM_DIRS   := examples/node tools/buf
NPM_STAMPS := $(if $(NODE),$(addsuffix /node_modules/.installed,$(NPM_DIRS)))
BUF        := tools/buf/node_modules/.bin/buf
# The descriptor image of the last release, the baseline of `buf breaking`.
PROTO_RELEASE := $(lastword $(shell ls protos/releases/*.binpb 2>/dev/null | sort -V))

%/node_modules/.installed: %/package-lock.json %/package.json
	cd $* && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

npm: $(NPM_STAMPS)

# One stamp per extra: `make run` on a clean clone installs the server's dependencies, not the tools.
$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$*]'
	touch $@

# The headline: start a server on the embedded SQLite default and run the complete workflow with live progress.
# If a server (`make serve`) already owns the database, the workflow runs on that server instead.
run: $(VENV)/.installed-server
	$(PY) -m voltorch_server.demo --db $(DB) --ui-port $(UI_PORT)

# The cluster in one command: a throwaway PostgreSQL, three replicas on loopback, the complete workflow through
# all three, the replica that owns it SIGKILLed mid-run and the run finishing on another; Ctrl-C stops it all.
cluster: $(VENV)/.installed-server
	$(PY) -m voltorch_server.cluster_demo

serve: $(VENV)/.installed-server
	$(VENV)/bin/voltorch serve --host $(HOST) --port $(PORT) --db $(DB) --ui-port $(UI_PORT)

# A shell with the venv active: `voltorch` (the CLI) and `python` (with the SDK) on PATH. `exit` leaves it.
shell: $(VENV)/.installed-server
	@echo "voltorch is $(VENV)/bin/voltorch; this shell has it on PATH (exit to leave)"
	@. $(VENV)/bin/activate && exec $${SHELL:-/bin/sh} -i

test: $(VENV)/.installed-dev $(NPM_STAMPS)
	@test -n "$(NODE)" || echo "*** node not found: the Node.js example and buf tests will be SKIPPED (they fail under CI=true) ***"
	$(PY) -m pytest -q $(PYTEST_ARGS)

protos: $(VENV)/.installed-dev
	$(PY) -m voltorch_server.protogen sdk

# Regenerates into a temporary folder and fails if the committed code in sdk/voltorch/v1 differs.
protos-check: $(VENV)/.installed-dev
	$(PY) -m voltorch_server.protogen --check

lint: $(VENV)/.installed-dev protos-check proto-lint typecheck
	$(VENV)/bin/ruff check sdk server tests bench
	$(VENV)/bin/ruff format --check sdk server tests bench

# buf lint, and buf breaking against the last release's image (buf.yaml says which rules and why).
proto-lint: $(if $(NODE),tools/buf/node_modules/.installed)
ifeq ($(NODE),)
	@echo "*** node not found: buf lint / buf breaking NOT RUN ***"; test "$(CI)" != "true"
else
	$(BUF) lint
	$(BUF) breaking --against $(PROTO_RELEASE)
endif

# mypy with check_untyped_defs over the SDK, the server, the tests and the bench (config in pyproject.toml); part of lint.
typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy sdk/voltorch server/voltorch_server tests bench

# The bench extra adds the peers measured beside voltorch (LangGraph).
bench: $(VENV)/.installed-dev $(VENV)/.installed-bench
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache build *.egg-info $(addsuffix /node_modules,$(NPM_DIRS))
