# Every target sets up what it needs: a venv in .venv with the project installed (editable) from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 50051
DB     ?= ./voltorch.db

.PHONY: setup run serve test protos protos-check lint proto-lint npm bench clean

setup: $(STAMP)

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

test: $(STAMP) $(NPM_STAMPS)
	@test -n "$(NODE)" || echo "*** node not found: the Node.js example and buf tests will be SKIPPED (they fail under CI=true) ***"
	$(PY) -m pytest -q $(PYTEST_ARGS)

protos: $(STAMP)
	$(PY) -m voltorch_server._protogen sdk

lint: $(STAMP) proto-lint
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

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info $(addsuffix /node_modules,$(NPM_DIRS))
