# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when it is
# missing and refresh it when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/mltk demo --out $(DEMO_OUT)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check mltk tests benchmarks configs

test: lint
	$(BIN)/python -m pytest -q

# The day-to-day lane: everything not marked slow (see README, Development).
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(VENV)/.installed-dev
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info .pytest_cache .ruff_cache .hypothesis
