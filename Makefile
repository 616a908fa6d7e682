# Fresh machine: `make run` (set up .venv, train ThyroNet-X4 on DDTI) or `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DDTI ?= ../shared/data/ddti
STAMP := $(VENV)/.installed

.PHONY: setup run test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/thyronet train --data $(DDTI)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) runs .pytest_cache
