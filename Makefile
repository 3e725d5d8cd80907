# Everything a fresh machine needs, from a bare Python >= 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := out

.PHONY: run test lint bench bench-smoke setup clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Offline (no key): the emulator's realistic profile, capped by the account tier (V0..V3 = 30/40/50/60).
TIER ?= V0

run: $(STAMP)  ## extract the bundled sample tickets and reports (offline emulator without a key)
	mkdir -p $(OUT)
	GLM_EXTRACT_EMULATOR_TIER=$(TIER) $(BIN)/glm-extract run --task ticket_qa --input data/sample/tickets.parquet \
		--output $(OUT)/tickets_enriched.parquet
	GLM_EXTRACT_EMULATOR_TIER=$(TIER) $(BIN)/glm-extract run --task financial_report \
		--input data/sample/financial_reports.parquet --output $(OUT)/financial_reports_enriched.parquet

test: $(STAMP)  ## lint, type-check and run every test suite
	$(BIN)/ruff check pipeline flows emulator tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15

lint: $(STAMP)
	$(BIN)/ruff check pipeline flows emulator tests benchmarks scripts
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --smoke

clean:
	rm -rf $(VENV) $(OUT) .glm-extract
