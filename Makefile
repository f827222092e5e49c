# One command per job; each creates the virtual environment on first use.
VENV   ?= .venv
PYTHON ?= python3
# The CPU build of PyTorch; users with a GPU install their own torch first (see README).
TORCH  ?= torch==2.13.0
PY      = $(VENV)/bin/python

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/n2a demo -o demo-output --force

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) benchmarks/speed.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache
