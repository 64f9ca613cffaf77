# The two commands (see README.md):
#   make run   — set everything up and run the service on the embedded default
#   make test  — set everything up and run lint, type checks and the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the project needs at run or test time.
APT_PACKAGES := postgresql-client chromium libmagic1 tesseract-ocr tesseract-ocr-eng poppler-utils
PACKAGES := core tasks services ingest retrieval generation api eval
export DO_NOT_TRACK := 1
export SCARF_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint typecheck services clean

$(VENV)/.installed: pyproject.toml constraints.txt
	./scripts/ensure-apt.sh $(APT_PACKAGES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, on its own: the CPU build (anything else would pull CUDA wheels).
	$(BIN)/pip install -q torch==2.13.0
	# unstructured's PDF code imports unstructured-inference even for the fast strategy; its
	# declared dependencies would replace torch (CUDA) and add torchvision: install it alone.
	$(BIN)/pip install -q --no-deps unstructured-inference==1.6.14
	# Only for the Compose specification's JSON schema it ships (tests/system/test_compose.py);
	# its own pins (PyYAML<6, ...) would conflict with ours, and nothing imports it.
	$(BIN)/pip install -q --no-deps docker-compose==1.29.2
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/ragkb init
	$(BIN)/ragkb serve

services:
	./scripts/ensure-services.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy $(PACKAGES)

test: install services lint typecheck
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) ragkb-data .pytest_cache .mypy_cache .ruff_cache
