# Every target sets itself up on a fresh machine: a virtual environment in .venv,
# the CPU build of torch first (so no CUDA wheels are pulled), then the project.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# pytest-xdist processes for the suite; a module's tests share one (--dist loadscope)
TEST_WORKERS ?= 2
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install demo design test test-all lint typecheck clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[dev]" "mlflow==3.17.2"
	touch $@

install: $(VENV)/.installed

demo: install  ## the whole pipeline on the embedded data, small model (2 CPU cores: ~9.5 min)
	$(VENV)/bin/molvae run pipelines/demo.yaml

design: install  ## multi-objective design (QED x SA x MW) on the shipped model, by CMA-ES (~1 min)
	$(VENV)/bin/molvae run pipelines/design.yaml

test: install  ## the fast test suite (what CI runs)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

test-all: install  ## every test, the slow ones too
	$(PY) -m pytest -q -m "" -n $(TEST_WORKERS) --dist loadscope

lint: install  ## ruff: style, imports, bugbear, and no noqa for what it does not check
	$(VENV)/bin/ruff check molvae tests benchmarks data

typecheck: install  ## mypy on the package (settings in pyproject.toml)
	$(PY) -m mypy

clean:
	rm -rf $(VENV) prepared runs mlflow.db mlartifacts .mypy_cache
