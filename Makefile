# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --no-compile -e '.[test,torch]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cas_repo.demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadgroup

bench: $(STAMP)
	$(PY) -m tools.bench

clean:
	rm -rf $(VENV) data/cas .pytest_cache .hypothesis
