# -*- coding: utf-8 -*-
# SPDX-License-Identifier: Apache-2.0
"""Read what `molecule test` printed and say what is wrong with the outcome (tests only).

:func:`problems` checks the real outcome of a scenario, not words in its output:

* every step of the scenario's ``test_sequence`` ran, in order, and was successful;
* ``check`` and ``converge`` ended with a recap for every platform (no failed or unreachable host), and
  the converge changed something on every platform (so that an idempotent second run means something);
* ``idempotence`` ended with a recap for every platform with ``changed=0`` (and nothing failed);
* ``verify``: testinfra's summary line says exactly the expected number of tests passed, and nothing
  failed, errored or was skipped;
* every role task file that was included came from this checkout (molecule's prerun would otherwise
  install a built copy into ``~/.ansible/collections`` and run that one - or another checkout's).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence

_STEP = re.compile(r"^INFO\s+\[(?P<scenario>[^\]>]+?) > (?P<step>[a-z_]+)\] (?P<what>Executing|Executed: \S+)",
                   re.M)
_RECAP = re.compile(r"^(\S+)\s+:\s+(ok=.*)$", re.M)
_SUMMARY = re.compile(r"^=+ (?P<body>.*?) in [0-9.]+s(?: \([0-9:]+\))? =+$", re.M)
_INCLUDED = re.compile(r"^included: (\S+) for ", re.M)


def steps(output: str, scenario: str) -> List[Dict[str, str]]:
    """[{step, status, text}] in the order the steps ran; ``text`` is what the step printed."""
    out: List[Dict[str, str]] = []
    current: Optional[Dict[str, str]] = None
    start = 0
    for match in _STEP.finditer(output):
        if match.group("scenario") != scenario:
            continue
        if match.group("what") == "Executing":
            current = {"step": match.group("step"), "status": "", "text": ""}
            start = match.end()
        elif current is not None and match.group("step") == current["step"]:
            current["status"] = match.group("what").split(": ", 1)[1]
            current["text"] = output[start:match.start()]
            out.append(current)
            current = None
    if current is not None:  # a step that never ended
        current["status"] = "unfinished"
        current["text"] = output[start:]
        out.append(current)
    return out


def recap(text: str) -> Dict[str, Dict[str, int]]:
    """The last PLAY RECAP of ``text``: {host: {ok, changed, unreachable, failed, ...}}."""
    found: Dict[str, Dict[str, int]] = {}
    last = text.rfind("PLAY RECAP")
    for host, counts in _RECAP.findall(text[last:] if last >= 0 else ""):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)}
    return found


def summary_counts(text: str) -> Optional[Dict[str, int]]:
    """pytest's closing line ("8 passed in 17.07s", "7 passed, 1 failed in ..."): {passed: 8, ...}."""
    matches = list(_SUMMARY.finditer(text))
    if not matches:
        return None
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", matches[-1].group("body"))}


def count_tests(folder: Path) -> int:
    """Test functions in the test_*.py files of ``folder`` (the scenario's testinfra tests)."""
    total = 0
    for path in sorted(Path(folder).glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        total += sum(1 for node in tree.body
                     if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"))
        # tests shared between scenarios, imported by name (from lib.x import test_a, test_b)
        total += sum(1 for node in tree.body if isinstance(node, ast.ImportFrom)
                     for alias in node.names if (alias.asname or alias.name).startswith("test"))
    return total


def problems(output: str, scenario: str, sequence: Sequence[str], hosts: Sequence[str], expected_tests: int,
             checkout: Path) -> List[str]:
    """Everything wrong with the outcome of ``molecule test -s scenario``; empty when all is as claimed."""
    found: List[str] = []
    ran = steps(output, scenario)
    if [s["step"] for s in ran] != list(sequence):
        found.append("steps ran: %s; the scenario's test_sequence is %s"
                     % ([s["step"] for s in ran], list(sequence)))
    for step in ran:
        if step["status"] != "Successful":
            found.append("step %s: %s" % (step["step"], step["status"]))
    by_step: Dict[str, Dict[str, str]] = {}
    for step in ran:
        by_step.setdefault(step["step"], step)  # the first run of a step (destroy runs twice)
    hosts = list(hosts)
    for name in ("check", "converge", "idempotence"):
        if name not in by_step:
            continue
        counts = recap(by_step[name]["text"])
        missing = [h for h in hosts if h not in counts]
        if missing:
            found.append("%s: no recap for %s" % (name, ", ".join(missing)))
        for host in hosts:
            c = counts.get(host)
            if c is None:
                continue
            if c.get("failed", 0) or c.get("unreachable", 0):
                found.append("%s: %s failed=%d unreachable=%d" % (name, host, c.get("failed", 0),
                                                                  c.get("unreachable", 0)))
            if name == "idempotence" and c.get("changed", 0) != 0:
                found.append("idempotence: %s changed=%d (a second converge must change nothing)"
                             % (host, c["changed"]))
            if name == "converge" and c.get("changed", 0) == 0:
                found.append("converge: %s changed=0 (a converge of a fresh lab must change it)" % host)
    if "verify" in by_step:
        summary = summary_counts(by_step["verify"]["text"])
        if summary is None:
            found.append("verify: no test summary line (did testinfra run?)")
        else:
            if summary.get("passed", 0) != expected_tests:
                found.append("verify: %d tests passed, the scenario has %d" % (summary.get("passed", 0),
                                                                               expected_tests))
            bad = {k: v for k, v in summary.items() if k not in ("passed", "warning", "warnings") and v}
            if bad:
                found.append("verify: %s" % ", ".join("%d %s" % (v, k) for k, v in sorted(bad.items())))
    elif "verify" in sequence:
        found.append("verify: the step did not run")
    checkout = str(Path(checkout).resolve())
    included = _INCLUDED.findall(output)
    if not included:
        found.append("no role task file was included: cannot tell which copy of the collection ran")
    foreign = sorted({p for p in included if not str(Path(p).resolve()).startswith(checkout + "/")})
    if foreign:
        found.append("role task files from outside this checkout (%s): %s" % (checkout, ", ".join(foreign[:5])))
    return found
