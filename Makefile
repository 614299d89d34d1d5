# imgburst: `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench bytecode clean

run: $(VENV)/.installed bytecode
	$(BIN)/imgburst up

test: lint node_modules/.installed
	$(BIN)/pytest

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_import_graph.py
	$(BIN)/mypy imgburst/core imgburst/vk imgburst/worker

bench: $(VENV)/.installed bytecode
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python bench/suite.py --write

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "imgburst needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[loadgen]"
	$(MAKE) --no-print-directory bytecode
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# imgburst's own modules compiled once, as an installed package's are: with
# PYTHONDONTWRITEBYTECODE set (as in containers and CI machines), an editable install
# otherwise compiles every module it imports on every start (~12 ms of `imgburst submit`'s
# start, every worker's and the API's). Python checks each file against its source, so an
# edited module is compiled again in memory, never run stale.
bytecode:
	$(BIN)/python -m compileall -q imgburst

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .ruff_cache
