# tunekit: the two commands a new user needs are `make demo` and `make test`; both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TUNEKIT := $(VENV)/bin/tunekit
STAMP := $(VENV)/.tunekit-installed
DEMO_DIR ?= runs/demo

.PHONY: install demo test lint format compile check-compiled bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, on its own: this exact pin takes the CPU build; any other spec pulls CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(TUNEKIT) compile
	$(TUNEKIT) run supervised-tuning --local --config examples/supervised_tuning.yaml --output-dir $(DEMO_DIR)

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

compile: install
	$(TUNEKIT) compile
	$(PY) -m tunekit.pipelines.docs docs/configuration.md

# Fails when compiled/ differs from what the code compiles to (run in CI).
check-compiled: compile
	git diff --exit-code -- compiled/ docs/configuration.md

bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf runs build *.egg-info .pytest_cache .ruff_cache
