# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	sh tools/venv-install.sh $(VENV) '.[test,torch]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m cas_repo.demo

# The web view's tests drive Debian's headless Chromium; as root, install it when missing
# (otherwise those tests skip and say how to enable them).
# Six workers on two cores: much of the suite waits on fsync, spawned processes and
# loopback servers, and on a busy machine the scheduler shares the CPU per process.
test: $(STAMP)
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver for the browser tests"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
		{ apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } || \
		echo "could not install chromium: the browser tests will skip"; \
	fi
	$(MAKE) --no-print-directory check
	$(PY) -m pytest -q -n 6 --dist loadgroup

# The house checks (configured in pyproject.toml): the linter, the type checker, and the
# import layers; `make test` runs them first and fails on any finding.
check: $(STAMP)
	$(VENV)/bin/ruff check cas_repo tests tools
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	$(PY) -m tools.bench

clean:
	rm -rf $(VENV) data/cas .pytest_cache .hypothesis .mypy_cache .ruff_cache
