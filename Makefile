# podnet.cluster — developer entry points.
#   make demo   build the lab, run site and verify on it, print the matrix
#   make check  the quick loop: unit tests, lint and the fast integration tests (about a minute)
#   make test   every test: unit, integration (real kernel namespaces), molecule (needs root), and at its end
#               make core-oldest: a part of them with the oldest ansible-core meta/runtime.yml accepts
# Both do their own set-up: Debian packages, .venv with pinned versions, and the
# collection links that make this checkout importable as podnet.cluster and its lab/ as podnet.lab.

SHELL        := /bin/bash
PYTHON       ?= /usr/bin/python3
VENV         := .venv
BIN          := $(VENV)/bin
STAMP        := $(VENV)/.podnet-stamp
# The virtualenv of the oldest ansible-core the collection accepts (make core-oldest)
CORE_OLDEST       := .venv-core-oldest
CORE_OLDEST_BIN   := $(CORE_OLDEST)/bin
CORE_OLDEST_STAMP := $(CORE_OLDEST)/.podnet-stamp
COLLECTION   := .collections/ansible_collections/podnet/cluster
# podnet.lab (the lab of namespaces: role, playbook, module, connection, filters) is the directory lab/
LAB_COLLECTION := .collections/ansible_collections/podnet/lab
APT_PACKAGES := iproute2 iptables nftables iputils-ping procps util-linux \
                containernetworking-plugins docker.io busybox-static python3-venv \
                openssh-server openssh-client ethtool
# Only the tests need these: headless Chromium opens the HTML report (tests/integration/verify/test_report_lab.py).
TEST_APT_PACKAGES := chromium
export PATH  := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup apt apt-test apt-install venv collection demo lab lab-destroy check test unit integration molecule root \
        bench lint build clean sanity changelog changelog-lint core-oldest

setup: apt venv collection

apt:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(APT_PACKAGES)"

apt-test:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(TEST_APT_PACKAGES)"

apt-install:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt requirements-dev.txt constraints.txt
	test -x $(BIN)/pip || $(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

venv: $(STAMP)

collection:
	@mkdir -p $(dir $(COLLECTION))
	@ln -sfn ../../.. $(COLLECTION)
	@ln -sfn ../../../lab $(LAB_COLLECTION)

LAB_INVENTORY := inventories/lab

demo: setup
	$(BIN)/ansible-playbook podnet.lab.lab
	$(BIN)/ansible-playbook podnet.cluster.site -i $(LAB_INVENTORY)
	$(BIN)/ansible-playbook podnet.cluster.verify -i $(LAB_INVENTORY)
	@echo
	@echo "The lab is still up: its inventory is $(LAB_INVENTORY)/hosts.yml (try: make demo again, or"
	@echo "  $(BIN)/ansible -i $(LAB_INVENTORY) podnet_nodes -m command -a 'ip route')."
	@echo "Remove it with:  make lab-destroy"
	@echo "            or:  $(BIN)/ansible-playbook podnet.lab.lab -e podnet_lab_state=absent"

lab: setup
	$(BIN)/ansible-playbook podnet.lab.lab

# the same as the playbook alone: it removes the lab, its inventory and the plan's state file
lab-destroy: setup
	$(BIN)/ansible-playbook podnet.lab.lab -e podnet_lab_state=absent

# Tests run on pytest-xdist workers, grouped as tests/conftest.py says (a module that builds a lab once runs on
# one worker; labs of different groups are built side by side), the longest groups first. 4 workers keep the 2 cores
# busy through the tests' waits (kernel, SSH, timeouts); more only cost CPU in contention (docs/performance.md:
# 6 workers took a tenth more CPU for the same work, 3 no less CPU than 4 and a little more time).
PYTEST_JOBS  ?= 4
# make core-oldest runs beside the suite in make test: two workers of its own are enough for its 8 tests
CORE_OLDEST_JOBS ?= 2
PYTEST       := $(BIN)/pytest -n $(PYTEST_JOBS) --dist loadgroup --no-loadscope-reorder

# The integration tests build network namespaces: without root, say so and stop (never skip them quietly).
root:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make: the integration tests build network namespaces and need root; run make test as root" \
	       "(make unit runs the unit tests as any user)." >&2; exit 2; fi

check: root setup apt-test
	$(PYTEST) -m "not slow" tests

# make core-oldest (its own virtualenv, then its tests) starts first and runs beside the rest; meanwhile the suite's
# virtualenv is built and the changelog linted, then the pytest suite runs in the foreground with ansible-test
# sanity beside it (their output in tests/output/, shown at the end): most of the suite waits more than it computes,
# and a virtualenv's pip install leaves the second core idle.
test: root apt apt-test collection
	@mkdir -p tests/output; \
	$(MAKE) --no-print-directory core-oldest > tests/output/core-oldest.log 2>&1 & oldest=$$!; \
	if $(MAKE) --no-print-directory venv changelog-lint; then \
	  $(MAKE) --no-print-directory sanity > tests/output/sanity.log 2>&1 & sanity=$$!; \
	  $(PYTEST) tests; rc=$$?; \
	  wait $$sanity; sanity_rc=$$?; \
	  echo "--- make sanity: exit $$sanity_rc (tests/output/sanity.log)"; tail -n 15 tests/output/sanity.log; \
	else rc=2; sanity_rc=2; echo "--- the virtualenv or the changelog lint failed: no pytest, no make sanity"; fi; \
	wait $$oldest; oldest_rc=$$?; \
	echo "--- make core-oldest: exit $$oldest_rc (tests/output/core-oldest.log)"; tail -n 15 tests/output/core-oldest.log; \
	[ $$rc = 0 ] && [ $$sanity_rc = 0 ] && [ $$oldest_rc = 0 ]

# The oldest ansible-core meta/runtime.yml accepts (requires_ansible), in a virtualenv of its own: the plan role,
# site on an l2_routes lab and the l2_bridge move over SSH (tests/core-oldest/tests.txt) with its binaries.

$(CORE_OLDEST_STAMP): tests/core-oldest/requirements.txt
	test -x $(CORE_OLDEST_BIN)/pip || $(PYTHON) -m venv --clear $(CORE_OLDEST)
	$(CORE_OLDEST_BIN)/pip install -q --disable-pip-version-check -r tests/core-oldest/requirements.txt
	touch $@

core-oldest: root apt collection apt-test $(CORE_OLDEST_STAMP)
	@want=$$(sed -n 's/^requires_ansible: *">=\([0-9]*\.[0-9]*\)\..*"/\1/p' meta/runtime.yml); \
	have=$$($(CORE_OLDEST_BIN)/ansible-playbook --version | sed -n 's/.*\[core \([0-9.]*\)\].*/\1/p'); \
	if [ -z "$$want" ] || [ "$${have%.*}" != "$$want" ]; then \
	  echo "make: $(CORE_OLDEST) has ansible-core '$$have' but meta/runtime.yml requires_ansible starts at '$$want':" \
	       "pin that minor's latest patch in tests/core-oldest/requirements.txt" >&2; exit 1; fi; \
	echo "core-oldest: ansible-core $$have (requires_ansible >=$$want)"
	PATH=$(CURDIR)/$(CORE_OLDEST_BIN):$$PATH PODNET_VENV=$(CURDIR)/$(CORE_OLDEST) \
	  PODNET_CPU_DIR=$(CURDIR)/tests/output/cpu-core-oldest PODNET_CODE_CACHE=$(CURDIR)/tests/output/code-cache-core-oldest \
	  $(CORE_OLDEST_BIN)/pytest -n $(CORE_OLDEST_JOBS) --dist loadfile @tests/core-oldest/tests.txt

# ansible-test sanity (every test, this Python) on scratch git copies of podnet.cluster and podnet.lab; pip for its
# virtual environments is unpacked from a wheel kept in ansible-test's cache, fetched once with ensurepip's pip
# (tests/sanity/get_pip_offline.py), the rest comes from the index.
# Extra options: make sanity SANITY_ARGS='--test pylint' (one collection: SANITY_ARGS='--collection lab')
sanity: setup
	$(BIN)/python tests/sanity/run_sanity.py $(SANITY_ARGS)

# The changelog is antsibull-changelog's: a fragment per change in changelogs/fragments/, CHANGELOG.md
# generated from them (`make changelog`); the lint also fails when CHANGELOG.md is not what they generate.
changelog: setup
	$(BIN)/python tests/changelog/build_changelog.py

changelog-lint: setup
	$(BIN)/antsibull-changelog lint
	$(BIN)/python tests/changelog/build_changelog.py --check

unit: setup
	$(BIN)/pytest -m unit tests

integration: root setup apt-test
	$(PYTEST) tests/integration

# The scale benchmark, one table (docs/performance.md); e.g. BENCH_SIZES=500,2000 BENCH_LABS=20 make bench
bench: setup
	$(BIN)/python bench/bench.py

lint: setup
	$(BIN)/ansible-lint

# Two tarballs: podnet.cluster (this directory, lab/ left out) and podnet.lab (lab/)
build: setup
	$(BIN)/ansible-galaxy collection build --force
	$(BIN)/ansible-galaxy collection build --force lab

clean:
	rm -rf .collections .pytest_cache .hypothesis podnet-cluster-*.tar.gz podnet-lab-*.tar.gz
