# The two commands of the README (both can be run again: run retrains with --force and
# exports a new SavedModel version):
#   make run   -> set up .venv, train briefly on the built-in corpus, print samples, export
#                 (fixed steps and model, no time budget: a seeded run is reproducible)
#   make test  -> set up .venv, run the test suite
#   make test-fast -> the unit tier for the edit loop: the suite without the tests marked `slow`
#                     (trainings, exports, child-process CLI runs, distribution, reliability)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_DIR ?= runs/python-docs
EPOCHS ?= 6
STEPS ?= 150
# make run's fixed model and optimizer (the package's settings before the size rule), so its output stays
# comparable from commit to commit; `keras-textgen train` without them picks its settings from the corpus.
RUN_MODEL ?= --units 256 --batch-size 64 --dropout 0 --recurrent-dropout 0 --weight-decay 0 --learning-rate 0.005 \
	--lr-schedule constant

.PHONY: run test test-fast bench bench-defaults install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/keras-textgen train --corpus python-docs --out $(MODEL_DIR) --epochs $(EPOCHS) --steps-per-epoch $(STEPS) --seed 1 --force \
		--time-budget none $(RUN_MODEL)
	$(BIN)/keras-textgen generate --model $(MODEL_DIR) --prompt "def " --prompt "The " --max-length 200 --temperature 0.5 --seed 7
	$(BIN)/keras-textgen export --model $(MODEL_DIR) --format saved_model --name python-docs
	$(BIN)/keras-textgen export --model $(MODEL_DIR) --format tflite --name python-docs

# Test files run side by side (pytest-xdist), each file in one worker so its module fixtures (trained
# models) are built once; at most 4 workers, since each holds its own TensorFlow (~1 GB). No more workers
# than cores: the child processes many tests start already fill the cores, and a third worker on two
# cores made the suite slower, not faster. --no-loadscope-reorder: the workers take the files in collection
# order, longest first (tests/conftest.py); by default xdist hands out the files with the most tests first,
# which left the long ones with few tests (test_distribute, test_generator_cache) for the end.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PYTEST) tests

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" tests

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-defaults: $(STAMP)
	$(BIN)/python -m bench.defaults

clean:
	rm -rf $(VENV) runs saved_models/*/ saved_models/*.tflite saved_models/*.json
