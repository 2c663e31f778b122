# prodtype: every target creates and uses .venv itself.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
SHARED ?= ../shared
DATA ?= $(SHARED)/data/rakuten
export PRODTYPE_DATA_DIR ?= $(abspath $(DATA))

.PHONY: install install-dev airflow-venv run test lint typecheck pytest mutation bench-accuracy bench-serving profile export-encoder quantize-encoder clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e ".[dev]"
	touch $@

# torch (CPU build from local disk) is only for the encoder export and its parity test.
$(VENV)/.installed-export: $(VENV)/.installed
	$(PIP) install -q -c constraints.txt -e ".[dev,export]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-export

# Apache Airflow 3 in its own venv (its pins never meet prodtype's); the DAG tests run it as a subprocess.
AIRFLOW_VENV := .venv-airflow
$(AIRFLOW_VENV)/.installed-airflow: constraints-airflow.txt scripts/setup_airflow_venv.sh
	PYTHON=$(PYTHON) bash scripts/setup_airflow_venv.sh $(AIRFLOW_VENV)

airflow-venv: $(AIRFLOW_VENV)/.installed-airflow

run: install
	$(VENV)/bin/prodtype run

lint: install
	$(VENV)/bin/ruff check src tests benchmarks dags scripts
	$(VENV)/bin/ruff format --check src tests benchmarks dags scripts

typecheck: install
	$(VENV)/bin/mypy

# The suite runs on PYTEST_WORKERS processes (pytest-xdist), a test file per worker at a time (module
# fixtures such as a started server stay in one process); PYTEST_WORKERS=0 runs it in this one.
PYTEST_WORKERS ?= 3
pytest: install-dev airflow-venv
	$(VENV)/bin/pytest $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

test: lint typecheck pytest

# Break each critical rule on purpose (tests/mutants.toml) and check that its tests go red; minutes, so not
# part of `make test`. MUTATION_ARGS="--only ID ..." runs some; "--list" lists them.
mutation: install-dev
	$(PY) scripts/mutation_check.py $(MUTATION_ARGS)

bench-accuracy: install
	$(PY) benchmarks/bench_accuracy.py --data $(DATA)

bench-serving: install
	$(PY) benchmarks/bench_serving.py --data $(DATA) $(BENCH_ARGS)

# Where a prediction's time goes, stage by stage (MODEL=path/to/bundle).
profile: install
	$(PY) benchmarks/profile_predict.py --data $(DATA) --model $(MODEL) $(BENCH_ARGS)

export-encoder: install-dev
	$(PY) scripts/export_image_encoder.py

# The int8 image encoder, from the float one above and photos of the sample (no torch needed).
quantize-encoder: install
	$(PY) scripts/quantize_image_encoder.py --photos $(DATA)/image_train

clean:
	rm -rf $(VENV) $(AIRFLOW_VENV) .pytest_cache .mypy_cache .ruff_cache
