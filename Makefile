# The two commands of the README: `make example` and `make test`. Each does
# the whole set-up first (scripts/setup is quick when nothing is missing).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup example images test lint pytest kernels bench

setup:
	@./scripts/setup

example: setup
	$(BIN)/podvisor run examples/bundle.yaml

# The images examples/security-context.yaml and its neighbours run on, made
# from this machine's busybox-static and loaded into the image store (offline).
images: setup
	@./scripts/example-images

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest $(PYTEST_ARGS)

# The kernel tests in qemu guests, one per cgroup layout (v2 only, v1 only):
# what the host, a hybrid, cannot show. Runs after pytest; a guest that cannot
# boot fails the target.
kernels: setup
	$(BIN)/python -m tests.kernels.run --quiet $(KERNELS_ARGS)

test: lint pytest kernels

bench: setup
	$(BIN)/python bench/run.py
