# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""The collection as AWX/AAP take it: built into an execution environment (ansible-builder), run by
ansible-runner from a private data directory, with the tarball that ``ansible-galaxy collection build`` makes."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNTIME = {"netaddr", "google-auth", "requests", "pyyaml"}


def names(requirement_lines):
    """Distribution names (lower case) of pip requirement lines, comments and markers left out."""
    out = set()
    for line in requirement_lines:
        line = line.split("#", 1)[0].strip()
        if line:
            for stop in "<>=!~;[ ":
                line = line.split(stop, 1)[0]
            out.add(line.lower())
    return out


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)],
                   check=True, capture_output=True, text=True)
    (built,) = out.glob("podnet-cluster-*.tar.gz")
    return built


def env_without_checkout():
    env = dict(os.environ, PATH="%s:%s" % (BIN, os.environ.get("PATH", "")), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_CONFIG", None)  # nothing of the checkout's configuration: only the installed tarball
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    return env


def test_runtime_requirements_files():
    """requirements.txt holds what the controller imports; the dev tool chain is elsewhere."""
    runtime = names((REPO / "requirements.txt").read_text().splitlines())
    assert runtime == RUNTIME
    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    dev = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev and {"molecule", "pytest", "ansible-lint"} <= names(dev)


def test_ansible_builder_create_and_the_build_introspection(tmp_path, tarball):
    """ansible-builder create makes the context of an EE that installs the collection; the context's own
    introspection step, run over the collection installed as the image build installs it, yields the
    collection's run-time requirements (PyYAML is ansible-core's own: ansible-builder always leaves it out)."""
    (tmp_path / tarball.name).write_bytes(tarball.read_bytes())
    (tmp_path / "requirements.yml").write_text(yaml.safe_dump(
        {"collections": [{"name": "./%s" % tarball.name, "type": "file"}]}))
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump({
        "version": 3,
        "images": {"base_image": {"name": "quay.io/ansible/awx-ee:latest"}},
        "dependencies": {"ansible_core": {"package_pip": "ansible-core"},
                         "ansible_runner": {"package_pip": "ansible-runner"},
                         "galaxy": "requirements.yml"},
    }))
    env = env_without_checkout()
    proc = subprocess.run([str(BIN / "ansible-builder"), "create", "-f", "execution-environment.yml",
                           "-c", "context"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    context = tmp_path / "context"
    build = context / "_build"
    containerfile = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists())
    assert "introspect.py introspect" in containerfile.read_text()
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert [c["name"] for c in galaxy["collections"]] == ["./%s" % tarball.name]

    # The image's galaxy stage, then its introspection stage, on this machine.
    collections = tmp_path / "collections"
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "-r", str(build / "requirements.yml"),
                    "-p", str(collections)], cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    assert (collections / "ansible_collections" / "podnet" / "cluster" / "meta" / "execution-environment.yml").exists()
    pip_out, bindep_out = tmp_path / "pip.txt", tmp_path / "bindep.txt"
    proc = subprocess.run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", "--sanitize",
                           "--write-pip", str(pip_out), "--write-bindep", str(bindep_out), str(collections)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip_lines = pip_out.read_text().splitlines()
    assert names(pip_lines) == RUNTIME - {"pyyaml"}, pip_lines
    assert all("podnet.cluster" in line for line in pip_lines if line.strip())
    assert "openssh-client [platform:dpkg]" in bindep_out.read_text()


def test_ansible_runner_runs_the_plan_playbook(tmp_path, tarball):
    """AWX's path: ansible-runner run on a private data directory (inventory, env, the collection installed
    from its tarball), playbook podnet.cluster.plan by its name; the plan is in the job events (and no state file
    is written: the playbook is a preview), on CIDRs and names that are not the defaults."""
    collections = tmp_path / "collections"
    env = env_without_checkout()
    # cwd: not the checkout, whose ansible.cfg would find podnet.cluster installed already (its link)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)],
                   cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    assert (collections / "ansible_collections" / "podnet" / "cluster" / "playbooks" / "plan.yml").exists()
    pdd = tmp_path / "pdd"
    for sub in ("inventory", "env", "project"):
        (pdd / sub).mkdir(parents=True)
    state = tmp_path / "state" / "podnet_state.yml"
    nodes = {"rack7-w%d" % i: {"podnet_node_ip": "172.30.5.%d/26" % (10 + i)} for i in range(1, 6)}
    (pdd / "inventory" / "hosts.yml").write_text(yaml.safe_dump({"all": {
        "vars": {"podnet_cluster_cidrs": ["10.96.64.0/19"], "podnet_node_prefix_ipv4": 22,
                 "podnet_state_file": str(state), "ansible_connection": "local",
                 "ansible_python_interpreter": sys.executable},
        "children": {"podnet_nodes": {"hosts": nodes}}}}))
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1"}))
    proc = subprocess.run([str(BIN / "ansible-runner"), "run", str(pdd), "-p", "podnet.cluster.plan",
                           "--ident", "plan1"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=300)
    artifacts = pdd / "artifacts" / "plan1"
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert (artifacts / "status").read_text().strip() == "successful"
    assert (artifacts / "rc").read_text().strip() == "0"

    assert not state.exists()  # the plan playbook is a preview: it writes nothing
    blocks = {}
    # the plan as printed (by podnet.cluster.plan_report): one line per node, "NODE NODE-IP POD-CIDR GATEWAY"
    for event_file in sorted((artifacts / "job_events").glob("*.json")):
        for line in json.loads(event_file.read_text()).get("stdout", "").splitlines():
            words = line.split()
            if words and words[0] in ("+", "~"):
                words = words[1:]
            if len(words) >= 4 and words[0] in nodes and "/" in words[2]:  # not the recap lines
                assert words[1] == nodes[words[0]]["podnet_node_ip"].split("/", 1)[0]
                blocks[words[0]] = ipaddress.ip_network(words[2])
    assert set(blocks) == set(nodes), "the plan table is not in the job events"
    cluster = ipaddress.ip_network("10.96.64.0/19")
    assert all(b.prefixlen == 22 and b.subnet_of(cluster) for b in blocks.values())
    assert len(set(blocks.values())) == len(nodes)
