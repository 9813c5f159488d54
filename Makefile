# Two commands do everything on a fresh Debian 12 machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := aria2 postgresql prometheus prometheus-alertmanager prometheus-pushgateway rclone redis-server
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench bench-all lint format lock images clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock scripts/setup.sh
	APT_PACKAGES="$(APT_PACKAGES)" PYTHON="$(PYTHON)" VENV="$(VENV)" bash scripts/setup.sh
	touch $(STAMP)

demo: setup
	$(BIN)/crypto-lakehouse demo

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/crypto-lakehouse bench transfer --json benchmarks/results/transfer.json
	$(BIN)/crypto-lakehouse bench api --store sqlite --store postgres --json benchmarks/results/api.json

bench-all: bench
	$(BIN)/python benchmarks/transfer.py --objects 100000
	$(BIN)/crypto-lakehouse bench ingest --json benchmarks/results/ingest.json
	$(BIN)/crypto-lakehouse bench flows --runs 500 --json benchmarks/results/flows.json
	$(BIN)/crypto-lakehouse bench transform --json benchmarks/results/transform.json

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

# requirements.lock pins every package the images and the dev virtualenv install (used as a
# pip constraints file). `make lock` keeps the current pins where they still satisfy
# pyproject.toml; delete the file first to move everything to the newest versions.
lock: setup
	touch requirements.lock
	echo "prefect-kubernetes==0.8.0" | $(BIN)/uv pip compile pyproject.toml - --extra dev \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --constraint requirements.lock --custom-compile-command "make lock" --no-annotate -o requirements.lock.new
	mv requirements.lock.new requirements.lock

# The three container images, with podman or docker (exit 2, one line, when neither can
# build). Not part of `make test`: CI machines without an engine never call it.
images:
	bash deploy/docker/build-images.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
