PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-unit lint demo dev-kafka clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q tests

test-unit: venv
	$(BIN)/python -m pytest -q tests/unit

lint: venv
	$(BIN)/ruff check service tests examples
	$(BIN)/ruff format --check service tests examples
	$(BIN)/mypy

demo: venv
	$(BIN)/python -m examples.demo

dev-kafka: venv
	$(BIN)/kstatefun dev-kafka

clean:
	rm -rf $(VENV) .pytest_cache
