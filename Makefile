# make run   : set up everything, then fine-tune the embedded text default (offline)
# make test  : set up everything, then run the test suite (what .ci/run calls)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tl-hf-setup
export HF_HUB_OFFLINE ?= 1
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup run run-image run-audio test test-fast lint bench

setup: $(STAMP)

$(STAMP): scripts/setup.sh pyproject.toml
	bash scripts/setup.sh
	touch $@

run: setup
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/text_classify.py

run-image: setup
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/image_classify.py

run-audio: setup
	$(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/audio_classify.py

test: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q tests

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not distributed" tests

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/run_all.py
