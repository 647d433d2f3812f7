# Every target sets up its own environment first: a virtual environment in .venv with the
# pinned CPU torch installed before anything else (an unpinned torch pulls CUDA wheels).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

SEEDS  ?= 0 1 2 3 4

.PHONY: report test test-slow check bench paper clean-venv

report: $(STAMP)  ## the main job: surgery report beta0.01 vs beta1.0 (trains the policies if missing)
	$(BIN)/python -m interp.surgery --a beta0.01 --b beta1.0

test: $(STAMP)  ## the layering contract, then the fast test suite (what CI runs)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)  ## the slow tests: real training runs
	$(BIN)/python -m pytest -q -m slow

check: $(STAMP)  ## lint, format, layering contract, fast tests
	$(BIN)/python -m ruff check interp tests benchmarks analyses examples
	$(BIN)/python -m ruff format --check interp tests benchmarks analyses examples
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

paper: $(STAMP)  ## every experiment of the case study + reports/paper.html (five seeds; SEEDS=0 for one)
	$(BIN)/python analyses/paper.py --seeds $(SEEDS)

bench: $(STAMP)  ## timing ratios, see benchmarks/README.md
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_surgery.py
	$(BIN)/python benchmarks/bench_ensemble.py
	$(BIN)/python benchmarks/bench_eval.py
	$(BIN)/python benchmarks/bench_trl.py

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

clean-venv:
	rm -rf $(VENV)
