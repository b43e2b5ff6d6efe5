# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""docs/operations.md as written: every step's commands run in order on a lab of their own, and each run says
first what the page says it will (the lab's own names, pid-unique here, put in place of the page's)."""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import List, Tuple

import pytest

from lib.labtools import BIN, REPO, Lab, new_lab, run

PREFIX = "pops"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")


def steps() -> List[Tuple[str, List[str], List[str]]]:
    """(title, commands, text blocks) of each '## ' section of docs/operations.md."""
    text = (REPO / "docs" / "operations.md").read_text()
    out = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.splitlines()[0].strip()
        blocks = re.findall(r"^```(\w+)\n(.*?)^```", section, re.M | re.S)
        commands = [line for kind, body in blocks if kind == "sh" for line in body.splitlines() if line.strip()]
        texts = [body for kind, body in blocks if kind == "text"]
        out.append((title, commands, texts))
    return out


def squeeze(line: str) -> str:
    """A line without its column padding (the lab's names are longer than the page's)."""
    return re.sub(r"\s+", " ", line.strip())


def as_run(lab: Lab, command: str) -> List[str]:
    argv = shlex.split(command.replace("podnet-node", "%s-node" % lab.name)
                       .replace("podnet-router", "%s-router" % lab.name))
    assert argv[0] == "ansible-playbook", command
    argv[0] = str(BIN / "ansible-playbook")
    argv = [str(lab.inventory_dir) if a == "inventories/lab" else a for a in argv]
    if argv[1] == "podnet.lab.lab":
        argv += ["-e", json.dumps({"podnet_lab_name": lab.name, "podnet_lab_root": lab.root,
                                   "podnet_lab_inventory_dir": str(lab.inventory_dir)})]
    return argv


def says(lab: Lab, proc, expected: str, before: str = "TASK [podnet.cluster.node : Preflight"):
    out = [squeeze(l) for l in (proc.stdout + proc.stderr).splitlines()]
    for line in expected.strip("\n").splitlines():
        want = squeeze(line.replace("podnet-node", "%s-node" % lab.name).replace("podnet-router",
                                                                                 "%s-router" % lab.name))
        found = [i for i, l in enumerate(out) if l == want or (want.startswith("host ") and want in l)]
        assert found, "the run did not say %r:\n%s" % (want, "\n".join(out[-120:]))
        if before in proc.stdout:
            first = next(i for i, l in enumerate(out) if l.startswith(squeeze(before)))
            assert found[0] < first, "%r came after the preflight" % want


@pytest.fixture(scope="module")
def lab(tmp_path_factory, request) -> Lab:
    spec = new_lab(PREFIX, tmp_path_factory.mktemp("ops") / "lab", request, count=3)
    spec.lab_vars = {}   # the lab's defaults, as make demo builds it
    spec.build()
    run([str(BIN / "ansible-playbook"), "podnet.cluster.site", "-i", str(spec.inventory_dir)])
    return spec


def test_every_documented_step_runs_as_written(lab: Lab):
    done = []
    for title, commands, texts in steps():
        assert commands and texts, "%s: no command or no expected output in docs/operations.md" % title
        site = commands[-1]
        if len(texts) > 1:
            # the same step without its confirmation stops before any change and says why
            assert "-e podnet_allow_readdress=true" in site, title
            for command in commands[:-1]:
                run(as_run(lab, command))
            refused = run(as_run(lab, site.replace(" -e podnet_allow_readdress=true", "")), check=False)
            assert refused.returncode != 0, "%s: ran without the confirmation" % title
            says(lab, refused, texts[1])
            commands = [site]
        for command in commands[:-1]:
            run(as_run(lab, command))
        proc = run(as_run(lab, site))
        says(lab, proc, texts[0])
        done.append(title)
    assert done == ["Add a node", "Remove a node (and release its block)", "Change the node prefix",
                    "Change the cluster network", "Change the fabric"]
    verify = run([str(BIN / "ansible-playbook"), "podnet.cluster.verify", "-i", str(lab.inventory_dir)])
    assert "PASSED" in verify.stdout, verify.stdout[-3000:]
    state = (lab.inventory_dir / ".podnet_state.yml").read_text()
    assert "%s-node4" % lab.name not in state and "10.50.0.0/25" in state
