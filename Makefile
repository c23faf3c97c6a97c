# Everything a fresh Debian 12 machine with Python 3.11 and apt needs: `make test` installs it all.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBS := bird2 nsd caddy cloud-init iproute2 nftables gobgpd dnsutils curl prometheus-blackbox-exporter prometheus prometheus-bird-exporter
STACK ?= prod

.PHONY: help deps debs venv test lint golden docs lab lab-down bench render clean

help:
	@echo "make lab     boot the prod network in a local lab of namespaces and check it (root)"
	@echo "make test    install everything and run the tests"
	@echo "make lint    ruff + mypy"
	@echo "make golden  rewrite the golden files of the dev stack (review with git diff)"
	@echo "make docs    regenerate docs/config.md from the model"
	@echo "make bench   print timing figures"

deps: debs venv

# Debian packages: the real daemons and validators. Installing them starts no service.
debs: .debs.stamp
.debs.stamp:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

test: deps
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy infra userdata lab policies tests

golden: venv
	$(PY) -m tests.regenerate_golden

docs: venv
	$(PY) -m infra.docs

render: venv
	ANYCAST_BGP_PASSWORD=$${ANYCAST_BGP_PASSWORD:-lab-password} $(VENV)/bin/anycast render --stack $(STACK) --out out/$(STACK)

lab: deps
	$(VENV)/bin/anycast lab up --stack $(STACK)
	$(VENV)/bin/anycast lab check --stack $(STACK)
	@echo "Explore: $(VENV)/bin/anycast lab exec CLIENT -- CMD   (clients are listed in .lab/$(STACK)/state.json)"
	@echo "Tear down: $(VENV)/bin/anycast lab down --stack $(STACK)"

lab-down: venv
	$(VENV)/bin/anycast lab down --stack $(STACK)

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) .debs.stamp out .lab
