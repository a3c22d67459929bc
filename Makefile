# Two entry points for a fresh machine:
#   make quickstart   install, then run the embedded default pipeline
#   make test         install with the test extras, then lint and run the tests
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU build of PyTorch; a plain `pip install torch` would fetch a CUDA build of several GB.
TORCH_CPU ?= torch==2.13.0

.PHONY: install install-test llama-cpp quickstart test lint bench doctor

# llama-cpp-python built portably (GGML_NATIVE=OFF, AVX2, no AVX-512/AMX) into a wheel folder
# keyed by its flags, never from pip's wheel cache; DISTILLPIPE_LLAMA_NATIVE=1 opts in to -march=native.
llama-cpp:
	$(PYTHON) -P distillpipe/llama_build.py

install: llama-cpp
	$(PIP) install -e .

install-test: llama-cpp
	$(PIP) install "$(TORCH_CPU)"
	$(PIP) install -e '.[dev,hf,ray]'
	# headless Chromium renders the HTML report in tests/test_report.py; bubblewrap is the
	# execution filter's sandbox (tests/sandbox, tests/filters/test_execution.py)
	(test -x /usr/bin/chromium && command -v bwrap >/dev/null) || (apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium bubblewrap)

doctor:
	distillpipe doctor configs/quickstart.yaml

quickstart: install
	distillpipe doctor configs/quickstart.yaml
	distillpipe run configs/quickstart.yaml
	distillpipe report runs/quickstart -o runs/quickstart/report.html

lint:
	$(PYTHON) -m ruff check distillpipe tests bench
	$(PYTHON) -m ruff format --check distillpipe tests bench

test: install-test lint
	distillpipe doctor configs/quickstart.yaml
	$(PYTHON) -m pytest

bench: install-test
	$(PYTHON) bench/run_all.py
