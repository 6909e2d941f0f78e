# `make demo`: set up and create a cluster on the embedded local AWS endpoint.
# `make test`: set up and run the checks and the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline machines validate against a directory of CRDs; elsewhere the pinned releases are downloaded once.
export PIPELINE_CRDS_DIR ?= $(abspath $(wildcard ../shared/crds))
CLUSTER ?= demo
# One worker more than cores: the tests wait on terraform, git, gpg and the moto server often enough that
# a third worker keeps two cores busy (5% idle measured; two workers took a seventh longer).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

.PHONY: demo test lint bench-smoke clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.local: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The IaC analyser in a venv of its own: it pins dependencies (boto3 among them) that the project's need not share.
CHECKOV := .venv-checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet 'checkov==3.3.30'

demo: $(VENV)/.local
	$(BIN)/python -m pipeline new-cluster $(CLUSTER)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint $(CHECKOV)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --reliability-report=build/reliability.json
	$(BIN)/python scripts/reliability_report.py build/reliability.json docs/RELIABILITY.md

# Every measure of `python -m bench` on tiny fleets, so that the benchmark cannot rot; not its figures.
bench-smoke: $(VENV)/.dev
	$(BIN)/python -m bench --smoke --json build/bench-smoke.json

clean:
	rm -rf $(VENV) .venv-checkov .pipeline fleet.git
