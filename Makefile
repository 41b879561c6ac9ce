# The two commands of the README: `make example` and `make test`. Each does
# the whole set-up first (scripts/setup is quick when nothing is missing).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup example test lint pytest bench

setup:
	@./scripts/setup

example: setup
	$(BIN)/podvisor run examples/bundle.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint pytest

bench: setup
	$(BIN)/python bench/run.py
