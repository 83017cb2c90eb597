# The two commands: `make demo` runs the pipeline on this machine's own Python code,
# `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out

.PHONY: demo test venv runtimes clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: 2.13.0 is the CPU wheel these machines carry; any torch>=2.5 works.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP) runtimes
	$(BIN)/python -m dscoder demo --output $(DEMO_OUT)

# Language runtimes for the evaluation sandbox (bubblewrap, g++, JDK, php, mono, TypeScript 5)
# and Debian's Chromium for the web page's browser tests. Idempotent; fast when present.
runtimes:
	bash scripts/install-runtimes.sh
	command -v chromium >/dev/null || apt-get install -y -q --no-install-recommends chromium \
		|| (apt-get update -q && apt-get install -y -q --no-install-recommends chromium)

test: $(STAMP) runtimes
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT)
