# Everything a fresh Debian 12 machine with Python 3.11 and apt needs: `make test` installs it all.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEBS := bird2 nsd caddy cloud-init iproute2 nftables gobgpd dnsutils curl prometheus-blackbox-exporter lego pebble openssl prometheus prometheus-bird-exporter systemd-container debootstrap apt-utils ldnsutils unbound openssh-server lynis nmap frr unattended-upgrades
STACK ?= prod
MODE ?= processes

.PHONY: help deps debs venv lock test check lint golden docs lab lab-down bench render clean yaml-corpus

help:
	@echo "make lab     boot the prod network in a local lab of namespaces and check it (root)"
	@echo "             MODE=machines: every PoP a Debian 12 container booted from its user data"
	@echo "make test    install everything and run the tests (the lab ones need root)"
	@echo "make check   the fast tier: every test but the lab and the slow ones (docs/testing.md)"
	@echo "make lint    ruff + mypy"
	@echo "make lock    rewrite requirements.lock from pyproject.toml (then review git diff)"
	@echo "make golden  rewrite the golden files of the dev stack (review with git diff)"
	@echo "make docs    regenerate docs/config.md from the model"
	@echo "make yaml-corpus  re-record the YAML corpus with Go yaml.v3 after a Pulumi*.yaml change"
	@echo "make bench   measure, print and write docs/figures.md"

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

# The Python packages at the versions CI tests and deploys: requirements.lock (hash-checked), then the project itself.
venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# Update requirements.lock after a change of pyproject.toml: keeps the existing pins, adds what is new, pins pulumi to the
# CLI the workflows use. Everything to the newest versions: `rm requirements.lock && make lock`. pip-tools runs in a
# throwaway venv; PIP_CONFIG_FILE=/dev/null and no PIP_FIND_LINKS keep local package mirrors out of the hashes (PyPI's
# files only). About 4 minutes from scratch (it downloads every file to hash it).
PULUMI_VERSION := 3.259.0
LOCK_VENV := .lock-venv
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || (python3 -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q pip-tools)
	env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile -q --generate-hashes \
	  --allow-unsafe --extra dev --strip-extras --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
	  -P pulumi==$(PULUMI_VERSION) -o requirements.lock pyproject.toml

# Everything but the lab on $(JOBS) pytest-xdist workers, then the lab modules in one process, one after the other
# (they share the dev stack's namespaces). CI=true (.ci/run, GitHub) turns every skip into a failure (tests/conftest.py).
JOBS ?= 2
test: deps
	$(PY) -m pytest -q -m "not lab" -n $(JOBS)
	$(PY) -m pytest -q -m lab

# The fast tier for the edit-test loop: no lab, none of tests/helpers/tiers.py's slow tests; no root needed.
check: venv
	$(PY) -m pytest -q -m "not lab and not slow" -n $(JOBS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy infra userdata lab policies tests

golden: venv
	$(PY) -m tests.regenerate_golden

docs: venv
	$(PY) -m infra.docs

# Re-record tests/data/yamlv3_cases.json with Go's gopkg.in/yaml.v3 (the library Pulumi's CLI reads stack files with),
# after a change of a Pulumi*.yaml file: Go is needed only here, never by the tests.
yaml-corpus: venv
	dpkg -s golang-go golang-gopkg-yaml.v3-dev >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go golang-gopkg-yaml.v3-dev >/dev/null)
	GO111MODULE=off GOPATH=/usr/share/gocode $(PY) tests/yamlv3_oracle/generate.py

render: venv
	ANYCAST_BGP_PASSWORD=$${ANYCAST_BGP_PASSWORD:-lab-password} $(VENV)/bin/anycast render --stack $(STACK) --out out/$(STACK)

# MODE=machines: every PoP a Debian 12 container booted from its user data (docs/lab.md); default: processes.
lab: deps
	$(VENV)/bin/anycast lab up --stack $(STACK) $(if $(filter machines,$(MODE)),--machines)
	$(VENV)/bin/anycast lab check --stack $(STACK)
	@echo "Explore: $(VENV)/bin/anycast lab exec CLIENT -- CMD   (clients are listed in .lab/$(STACK)/state.json)"
	@echo "Tear down: $(VENV)/bin/anycast lab down --stack $(STACK)"

lab-down: venv
	$(VENV)/bin/anycast lab down --stack $(STACK)

bench: deps
	$(PY) -m bench

clean:
	rm -rf $(VENV) $(LOCK_VENV) .debs.stamp out .lab
