# podnet.cluster — developer entry points.
#   make demo   build the lab, run site and verify on it, print the matrix
#   make test   every test: unit, integration (real kernel namespaces), molecule
# Both do their own set-up: Debian packages, .venv with pinned versions, and the
# collection link that makes this checkout importable as podnet.cluster.

SHELL        := /bin/bash
PYTHON       ?= /usr/bin/python3
VENV         := .venv
BIN          := $(VENV)/bin
STAMP        := $(VENV)/.podnet-stamp
COLLECTION   := .collections/ansible_collections/podnet/cluster
APT_PACKAGES := iproute2 iptables nftables iputils-ping procps util-linux \
                containernetworking-plugins docker.io busybox-static python3-venv \
                openssh-server openssh-client
export PATH  := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup apt venv collection demo lab lab-destroy test unit integration molecule \
        bench lint build clean

setup: apt venv collection

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

venv: $(STAMP)

collection:
	@mkdir -p $(dir $(COLLECTION))
	@ln -sfn ../../.. $(COLLECTION)

LAB_INVENTORY := inventories/lab

demo: setup
	$(BIN)/ansible-playbook podnet.cluster.lab
	$(BIN)/ansible-playbook podnet.cluster.site -i $(LAB_INVENTORY)
	$(BIN)/ansible-playbook podnet.cluster.verify -i $(LAB_INVENTORY)
	@echo
	@echo "The lab is still up: its inventory is $(LAB_INVENTORY)/hosts.yml (try: make demo again, or"
	@echo "  $(BIN)/ansible -i $(LAB_INVENTORY) podnet_nodes -m command -a 'ip route')."
	@echo "Remove it with:  make lab-destroy"
	@echo "            or:  $(BIN)/ansible-playbook podnet.cluster.lab -e podnet_lab_state=absent"

lab: setup
	$(BIN)/ansible-playbook podnet.cluster.lab

lab-destroy: setup
	$(BIN)/ansible-playbook podnet.cluster.lab -e podnet_lab_state=absent
	rm -f $(LAB_INVENTORY)/podnet_state.yml $(LAB_INVENTORY)/podnet_state.yml.lock

test: setup
	$(BIN)/pytest tests

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

# One table for issue 9 (docs/performance.md); e.g. BENCH_SIZES=500,2000 BENCH_LABS=20 make bench
bench: setup
	$(BIN)/python bench/bench.py

lint: setup
	$(BIN)/ansible-lint

build: setup
	$(BIN)/ansible-galaxy collection build --force

clean:
	rm -rf .collections .pytest_cache .hypothesis podnet-cluster-*.tar.gz
