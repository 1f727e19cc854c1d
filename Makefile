# egress-tui: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Debian packages the tests and the benchmark drive for real (podman and containerd: the other
# engines, started by tests/enginelab; uidmap: rootless Podman's user namespaces); gcc, libc6-dev
# and python3-dev build the compiled fast path (tui/wire/_speedups.pyx) when pip installs egress-tui.
DEB_PACKAGES := python3-venv gcc libc6-dev python3-dev tcpdump tshark ethtool iproute2 iptables ipset nftables dnsutils openssl curl procps tmux librsvg2-bin debootstrap docker.io podman containerd uidmap shellcheck
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help deps venv demo report-demo test test-fast bench demo-capture screenshots clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

deps: ## install the Debian packages the tests need (as root; skipped when present)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install: $$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml setup.py tui/wire/_speedups.pyx
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP) ## create .venv with egress-tui and its test tools

demo: $(STAMP) ## the live inspector replaying the shipped capture (no root, no Docker needed)
	$(VENV)/bin/egress-tui --demo --preset bedrock:ap-northeast-1

report-demo: $(STAMP) ## the same capture as a headless report: which hosts, and are they allowed
	$(VENV)/bin/egress-tui report --demo --preset anthropic --preset bedrock:ap-northeast-1

test: deps $(STAMP) ## install everything from nothing, then run every test (root ones included)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## the tests that need neither root nor network namespaces
	$(PY) -m pytest -m "not netns and not root and not docker" $(PYTEST_ARGS)

bench: deps $(STAMP) ## report vs the tshark one-liner (bulk and handshake-heavy 200k packets, 2M); live capture rates, latency idle and under load, table; hostile packets; process lookups (from the host and through a helper)
	$(PY) bench/run.py
	$(PY) bench/live.py
	$(PY) bench/hostile.py
	$(PY) bench/procs.py

demo-capture: deps $(STAMP) ## re-record tui/data/demo.pcap in the network-namespace lab
	$(PY) -m tests.lab.record_demo

screenshots: $(STAMP) ## regenerate screenshots/*.svg from the real app on the demo capture
	$(PY) scripts/screenshots.py

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .cache .pytest_cache .hypothesis
