# policyshare: the two commands of the README, and their parts.
#   make quickstart   install, then run the main job (the sharing experiment's quickstart preset)
#   make test         install, then lint, type-check, check the import layers and run the fast tests
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install quickstart test test-slow lint typecheck imports clean

# torch==2.13.0 first: the CPU wheel that lies on disk; pyproject's bound (<2.14) then keeps
# pip from pulling a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/policyshare run configs/quickstart.yaml --jobs 2

lint: install
	$(BIN)/ruff check policyshare tests benchmarks

typecheck: install
	$(BIN)/mypy

# The layers of pyproject.toml's [tool.importlinter]: an import that climbs back up fails.
imports: install
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist), one per core; a test file stays on one worker (its
# module-scoped fixtures are built once). Every test writes under its own tmp_path.
test: lint typecheck imports
	$(BIN)/pytest -q -n 2 --dist loadfile

test-slow: install
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .grimp_cache
