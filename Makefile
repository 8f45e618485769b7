# Everything a fresh machine needs is installed by these targets: `make demo` and `make test`.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install system-deps lint typecheck test demo bench bench-scan bench-org bench-baseline bench-terraform bench-events bench-attribution soak fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

# promtool and Alertmanager come from Debian; tests that need them fail in CI without them.
system-deps:
	bash scripts/install-system-deps.sh

lint: install
	$(BIN)/ruff check sgwatch tests benchmarks scripts
	$(BIN)/ruff format --check sgwatch tests benchmarks scripts

typecheck: install
	$(BIN)/mypy sgwatch

test: install system-deps lint typecheck
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy $(BIN)/pytest -q

# The demo: the drift report of the bundled estate, then the daemon against the ECS emulator.
demo: install
	bash scripts/demo.sh

bench: install
	$(BIN)/python benchmarks/bench_engine.py

bench-scan: install
	$(BIN)/python benchmarks/bench_scan.py

bench-org: install
	$(BIN)/python benchmarks/bench_org.py

bench-baseline: install
	$(BIN)/python benchmarks/bench_baseline_memory.py

bench-events: install
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy $(BIN)/python benchmarks/bench_events.py

bench-attribution: install
	$(BIN)/python benchmarks/bench_attribution.py

bench-terraform: install
	$(BIN)/python benchmarks/bench_terraform.py

soak: install
	$(BIN)/python benchmarks/soak.py

# Hostile configs, baselines and snapshots through the CLI, time-bounded; prints the seed and a table.
FUZZ_SECONDS ?= 90
FUZZ_SEED    ?= 20261201
fuzz: install
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest -q -p no:cacheprovider --timeout=$$(( $(FUZZ_SECONDS) + 300 )) tests/fuzz/fuzz_inputs.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
