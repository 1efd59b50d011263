# Stable Training — two commands do everything on a fresh machine with Python 3.11 to 3.14:
#   make demo   set up .venv, build the student notebooks, grade the bundled sample cohort
#   make test   set up .venv and run every test
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUBMISSIONS ?= autograder/samples/submitted
OUT ?= grading-out
JOBS ?= 0
TESTS ?=

.PHONY: setup sandbox-tool system-tools test test-fast demo release grade validate lab bench clean help slides

help:
	@echo "make demo      build the course and grade the bundled sample cohort"
	@echo "make test      run every test"
	@echo "make release   regenerate course/ (student notebooks) from solutions/"
	@echo "make grade SUBMISSIONS=<dir> OUT=<dir>   grade a folder of submissions"
	@echo "make validate NB=<notebook>   see what the grader will give your notebook, and what it treats differently"
	@echo "make lab       open JupyterLab on course/"
	@echo "make slides    write offline slide decks of every lesson to slides/ (student and instructor)"
	@echo "make bench     run the benchmarks"
	@echo "make sandbox-tool   install bubblewrap, the grading sandbox (as root, Debian/Ubuntu)"

$(STAMP): pyproject.toml requirements/lock.txt
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v < (3, 15) else "Python 3.11 to 3.14 is required (the pinned torch has wheels for these), found " + sys.version.split()[0] + ": run make with PYTHON=/path/to/python3.X")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "could not create $(VENV) with $(PYTHON); on Debian/Ubuntu: sudo apt install python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements/lock.txt -e '.[dev]'
	@touch $@

setup: $(STAMP)

# The grading sandbox (stgrade.bwrap). `stgrade grade` refuses untrusted work without it.
sandbox-tool:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq bubblewrap; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq bubblewrap; fi; }
	@bwrap --version

# System tools the tests use: bubblewrap (grading sandbox) and Chromium (browser tests). Installed
# with apt when missing and we are root on Debian/Ubuntu; elsewhere the tests that need them skip
# and say why (with CI=true they fail instead).
system-tools:
	@missing=""; command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	 command -v chromium >/dev/null || missing="$$missing chromium"; \
	 if [ -z "$$missing" ]; then exit 0; fi; \
	 if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	   echo "installing$$missing (apt)"; apt-get update -qq && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	 else echo "note:$$missing not installed (needs root and apt): the tests that need them will be skipped"; fi

# make test TESTS="tests/test_sandbox_*.py" runs some of them (CI does, as a normal user)
test: $(STAMP) system-tools
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=40 $(TESTS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow"

release: $(STAMP)
	$(BIN)/stgrade release

demo: $(STAMP) system-tools
	$(BIN)/stgrade demo

grade: $(STAMP)
	$(BIN)/stgrade grade $(SUBMISSIONS) --out $(OUT) --jobs $(JOBS)

validate: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make validate NB=path/to/your_notebook.ipynb"; exit 2; }
	$(BIN)/stgrade validate "$(NB)"

# JupyterLab on the whole repository, opening course/ (instructors: solutions/); --allow-root when root;
# no news or update check (offline, and no "get notified about Jupyter news?" popup over a live deck)
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/course \
	  --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	  $(if $(filter 0,$(shell id -u)),--allow-root)

slides: $(STAMP)
	$(BIN)/python -m stgrade.slides

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_grading.py
	$(BIN)/python benchmarks/bench_lesson_cost.py
	$(BIN)/python benchmarks/bench_reference.py
	$(BIN)/python benchmarks/bench_notebooks.py

clean:
	rm -rf $(VENV) grading-out autograder/samples autograder/gradebook.db slides .cache
