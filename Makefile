# Two commands for a newcomer: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARCH   := $(shell uname -m)

# torch builds: the demo needs torch only (a CPU build, fast to install); the tests also exercise the
# torchvision backbones, which need a torch/torchvision pair built together.
ifeq ($(ARCH),aarch64)
TORCH_DEMO := torch==2.9.1
TORCH_TEST := torch==2.9.1 torchvision==0.24.1
else
TORCH_DEMO := torch==2.13.0
TORCH_TEST := torch==2.14.1 torchvision==0.29.1
endif

DEMO_CONFIG ?= configs/demo.yaml
DEMO_OUT    ?= runs/demo

.PHONY: demo test lint bench bench-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-ready: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_DEMO)
	$(BIN)/pip install -q -e ".[report]"
	touch $@

$(VENV)/.test-ready: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torchvision" 2>/dev/null || $(BIN)/pip install -q $(TORCH_TEST)
	$(BIN)/pip install -q -e ".[test,vision,report]"
	touch $@ $(VENV)/.demo-ready

demo: $(VENV)/.demo-ready
	$(BIN)/hashguard study $(DEMO_CONFIG) --out $(DEMO_OUT)

test: $(VENV)/.test-ready
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest tests

# one table of every speed goal beside its reference (benchmarks/speed_table.py); bench-all: every script, quick
bench: $(VENV)/.test-ready
	$(BIN)/python benchmarks/speed_table.py

bench-all: $(VENV)/.test-ready
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script --quick || exit 1; done

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
