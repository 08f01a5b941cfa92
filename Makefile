# The two commands: `make serve` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: serve test chaos lint typecheck bench bench-delivery bench-blob bench-growth bench-scale azurite clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

# `make serve PORT=9000 HOST=0.0.0.0`. HOST is taken only from the command line, never
# from the environment (csh exports HOST as the machine's name); PORT from either.
HOST := 127.0.0.1
PORT ?= 8000
# The address the printed example uses: a wildcard is reached on loopback; IPv6 in [].
SERVE_URL_HOST := $(if $(filter 0.0.0.0 ::,$(HOST)),127.0.0.1,$(if $(findstring :,$(HOST)),[$(HOST)],$(HOST)))

# The embedded set-up lets the outbound guard reach this machine, so that a receiver on
# localhost can be verified; the server says so when it starts. Unset it in production.
serve: export WAYPOST_OUTBOUND_ALLOW ?= 127.0.0.0/8,::1/128
serve: $(STAMP)
	$(BIN)/waypost bootstrap --base-url http://$(SERVE_URL_HOST):$(PORT)
	$(BIN)/waypost serve --host $(HOST) --port $(PORT)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# Azurite (the Azure Storage emulator) from npm, pinned: the cloud delivery tests write to it.
AZURITE := tools/azurite/node_modules/.bin/azurite-blob
$(AZURITE): tools/azurite/package.json tools/azurite/package-lock.json
	npm ci --prefix tools/azurite --no-audit --no-fund --loglevel=error
	touch $@

azurite: $(AZURITE)

# Both cores: test files are spread over two processes, each with its own servers.
test: lint typecheck $(AZURITE)
	$(BIN)/pytest -n 2 --dist loadfile

# Long runs that kill processes (a worker SIGKILLed during 2,000 messages, and one writing
# 500 messages into Azurite); CI runs them.
chaos: $(DEV_STAMP) $(AZURITE)
	WAYPOST_CHAOS=1 $(BIN)/pytest tests/chaos

bench: $(STAMP)
	$(BIN)/python bench/api_throughput.py

# End-to-end delivery against 20 loopback receivers; POSTGRES=postgresql://... adds PostgreSQL.
bench-delivery: $(STAMP)
	$(BIN)/python bench/delivery.py $(if $(POSTGRES),--postgres $(POSTGRES))

# Flat latency as tables grow: the hot reads at 1,000 and at 1,000,000 logs (100,000
# destinations) on SQLite, and on PostgreSQL with POSTGRES=postgresql://... Seeding a
# million logs takes minutes.
bench-growth: $(STAMP)
	$(BIN)/python bench/growth.py $(if $(POSTGRES),--postgres $(POSTGRES))

# Several processes on one PostgreSQL (POSTGRES=..., default the local test server): API
# throughput with 1 and 2 API processes, delivery with 1 and 2 workers, and where the CPU goes.
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(if $(POSTGRES),--postgres $(POSTGRES))

# Cloud delivery into Azurite: 5,000 messages, single files and batches, with the Azure
# SDK's own upload rate as the ceiling. The dev extras: tests/azurite.py starts Azurite.
bench-blob: $(DEV_STAMP) $(AZURITE)
	$(BIN)/python bench/blob.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
