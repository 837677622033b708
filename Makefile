# The two commands of the README: `make run` and `make test` do all set-up themselves.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench install clean unprivileged

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sbm demo

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks scripts)
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory unprivileged

# The isolation tests again as an unprivileged user (uid 65534), as most users run them.
unprivileged: $(STAMP)
	bash scripts/unprivileged.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV)
