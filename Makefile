# make run   : set up everything, then fine-tune the embedded text default (offline)
# make test  : set up everything, then run the test suite (what .ci/run calls)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tl-hf-setup
# pytest workers (xdist): one per core; each test process uses one thread
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# The user's jobs (make run*) use every core (torch's default); tests run one thread per
# process, several processes side by side.
TEST_ENV := OMP_NUM_THREADS=1
LAUNCH := $(VENV)/bin/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no

.PHONY: setup run run-image run-audio test test-fast lint bench lock

setup: $(STAMP)

$(STAMP): scripts/setup.sh pyproject.toml constraints.txt
	bash scripts/setup.sh
	touch $@

run: setup
	$(LAUNCH) recipes/text_classify.py

run-image: setup
	$(LAUNCH) recipes/image_classify.py

run-audio: setup
	$(LAUNCH) recipes/audio_classify.py

test: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) --durations=25 tests

test-fast: setup
	$(TEST_ENV) $(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow and not distributed" tests

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(TEST_ENV) $(PY) bench/run_all.py

# A new constraints.txt: a fresh venv resolved without the old pins, frozen, then the suite on it.
lock:
	rm -rf .venv-lock
	TL_HF_UNPINNED=1 VENV=.venv-lock bash scripts/setup.sh
	{ echo "# Exact versions the set-up installs (scripts/setup.sh: pip install -c constraints.txt)."; \
	  echo "# Refresh: make lock (a fresh venv without these pins, then pip freeze, then the suite on it)."; \
	  echo "# Generated $$(date +%F), $$(.venv-lock/bin/python -V), $$(uname -m)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^tl-hf'; } > constraints.txt
	touch .venv-lock/.tl-hf-setup
	$(MAKE) test VENV=.venv-lock
