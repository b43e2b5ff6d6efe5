# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The iptables engine: whole owned chains and their marked jumps, one atomic iptables-restore per table.

Standard library only. ``plan_chains`` reads ``iptables-save -t TABLE`` and returns the restore text;
``apply_chains`` runs ``iptables-restore -w --noflush``; ``test_chains`` runs the same text with
``--test`` (nothing committed), the preflight of a real write.
"""

from __future__ import annotations

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, read
from ansible_collections.podnet.cluster.plugins.module_utils.iptables import (
    BUILTIN_CHAINS,
    RuleError,
    has_comment,
    normalize_line,
    parse_save,
    render_rule,
    rule_target,
    valid_chain_name,
)

MATCH_FIELDS = ("source", "destination", "in_interface", "out_interface", "protocol", "dport", "src_type", "dst_type")
# Seconds iptables-restore waits for the xtables lock (legacy back end) held by kube-proxy, Docker, firewalld...
XTABLES_WAIT = "10"


def _section(chain_names, chains, jump_lines):
    lines = []
    for name in chain_names:
        if name not in chains:
            continue
        lines.append(":%s -" % name)
        lines.extend(chains[name])
    lines.extend(jump_lines)
    return "\n".join(lines) + ("\n" if lines else "")


def tools(ip_version):
    prefix = "ip6tables" if int(ip_version) == 6 else "iptables"
    return prefix + "-save", prefix + "-restore"


def render_desired(ip_version, table, chains, mark):
    """(names, {chain: [lines]}, [(from, position, line)]) of the wanted chains; EngineError when invalid."""
    builtins = BUILTIN_CHAINS[table]
    names, desired, desired_jumps = [], {}, []
    for chain in chains:
        name = chain["name"]
        if not valid_chain_name(name) or name in builtins or name.upper() in (
                "ACCEPT", "DROP", "RETURN", "QUEUE", "MASQUERADE", "SNAT", "DNAT", "REJECT"):
            raise EngineError("chain name %r in table %s is not allowed (1-28 characters of A-Z a-z 0-9 _ . -, not a "
                              "built-in chain or target)" % (name, table))
        if name in desired:
            raise EngineError("chain %s is listed twice for table %s" % (name, table))
        names.append(name)
        lines = []
        for idx, rule in enumerate(chain.get("rules") or []):
            try:
                lines.append(render_rule(rule, name, ip_version))
            except RuleError as exc:
                raise EngineError("chain %s (table %s, IPv%d), rule %d %r: %s"
                                  % (name, table, ip_version, idx + 1, rule, exc))
        desired[name] = lines
        for idx, jump in enumerate(chain.get("jumps") or []):
            jump = dict(jump)
            src = jump.pop("from", None)
            position = jump.pop("position", None) or "append"
            bad = [k for k, v in jump.items() if k not in MATCH_FIELDS and v is not None]
            if bad:
                raise EngineError("jump %d to chain %s: unsupported field(s) %s (allowed: from, position, %s)"
                                  % (idx + 1, name, ", ".join(sorted(bad)), ", ".join(MATCH_FIELDS)))
            if src not in builtins:
                raise EngineError("jump %d to chain %s: from=%r is not a built-in chain of table %s (%s)"
                                  % (idx + 1, name, src, table, ", ".join(builtins)))
            if position not in ("insert", "append"):
                raise EngineError("jump %d to chain %s: position %r is not insert or append" % (idx + 1, name, position))
            jump["comment"] = mark
            jump["jump"] = name
            try:
                line = render_rule(jump, src, ip_version)
            except RuleError as exc:
                raise EngineError("jump %d from %s to chain %s (table %s, IPv%d): %s"
                                  % (idx + 1, src, name, table, ip_version, exc))
            if any(j[2] == line for j in desired_jumps):
                raise EngineError("jump from %s to chain %s is listed twice: %s" % (src, name, line))
            desired_jumps.append((src, position, line))
    return names, desired, desired_jumps


def read_table(runner, ip_version, table):
    save, _restore = tools(ip_version)
    cmd = [runner.which(save), "-t", table]
    rc, out, err = read(runner, cmd)
    if rc != 0:
        raise EngineError("%s -t %s failed: %s (is the %s table available in this kernel for IPv%d?)"
                          % (save, table, (err or out).strip(), table, ip_version), rc=rc)
    return parse_save(out)[0]


def plan_chains(runner, ip_version=4, table="filter", chains=(), mark="podnet.cluster", state="present",
                current=None):
    """The whole change of one table; ``current`` (parsed iptables-save) saves a read when given."""
    ipv = int(ip_version)
    if table not in BUILTIN_CHAINS:
        raise EngineError("table %r is not one of %s" % (table, ", ".join(BUILTIN_CHAINS)))
    names, desired, desired_jumps = render_desired(ipv, table, chains, mark)
    if current is None:
        current = read_table(runner, ipv, table)
    ours = set(names)
    current_ours = {n: current[n]["rules"] for n in names if n in current}
    current_jumps, foreign_refs = [], []
    for cname, info in current.items():
        if cname in ours:
            continue
        for line in info["rules"]:
            target = rule_target(line)
            if target not in ours:
                continue
            if has_comment(line, mark):
                current_jumps.append((cname, line))
            else:
                foreign_refs.append(line)

    restore = []
    chains_written, chains_deleted, jumps_added, jumps_removed = [], [], [], []
    if state == "present":
        for name in names:
            if name not in current_ours or current_ours[name] != [normalize_line(x) for x in desired[name]]:
                chains_written.append(name)
        # declarations first (create or flush), then content, so chains may reference each other
        for name in chains_written:
            restore.append(":%s - [0:0]" % name)
        for name in chains_written:
            restore.extend(desired[name])
        wanted = {normalize_line(line) for _src, _pos, line in desired_jumps}
        counts = {}
        for _cname, line in current_jumps:
            counts[line] = counts.get(line, 0) + 1
        kept = set()
        for _cname, line in current_jumps:
            if line in wanted and counts[line] == 1:
                kept.add(line)
                continue
            # not wanted, or duplicated: delete every copy by its spec and add one back below
            jumps_removed.append("-D" + line[2:])
        inserts = []
        for src, position, line in desired_jumps:
            if normalize_line(line) in kept:
                continue
            if position == "insert":
                inserts.append("-I %s 1%s" % (src, line[len("-A " + src):]))
            else:
                jumps_added.append(line)
        # -I ... 1 puts each rule on top: insert in reverse to keep the given order
        jumps_added = list(reversed(inserts)) + jumps_added
        restore.extend(jumps_removed)
        restore.extend(jumps_added)
        after_chains = desired
        after_jumps = [line for _s, _p, line in desired_jumps]
    else:
        if foreign_refs and current_ours:
            raise EngineError("cannot delete chain(s) %s in table %s (IPv%d): rules not marked %r still jump to them: "
                              "%s" % (", ".join(sorted(current_ours)), table, ipv, mark, "; ".join(foreign_refs)))
        for _cname, line in current_jumps:
            jumps_removed.append("-D" + line[2:])
        restore.extend(jumps_removed)
        for name in names:
            if name in current_ours:
                chains_deleted.append(name)
                restore.append("-F %s" % name)
        for name in chains_deleted:
            restore.append("-X %s" % name)
        after_chains, after_jumps = {}, []

    save, _restore = tools(ipv)
    before_text = _section(names, {n: [normalize_line(x) for x in v] for n, v in current_ours.items()},
                           [line for _c, line in current_jumps])
    after_text = _section(names, after_chains, after_jumps)
    return dict(
        changed=bool(restore),
        policies={name: current[name]["policy"] for name in BUILTIN_CHAINS[table] if name in current},
        table=table,
        ip_version=ipv,
        chains_written=chains_written,
        chains_deleted=chains_deleted,
        jumps_added=jumps_added,
        jumps_removed=jumps_removed,
        rules={n: desired[n] for n in names},
        restore="*%s\n%s\nCOMMIT\n" % (table, "\n".join(restore)) if restore else "",
        diff=dict(before=before_text, after=after_text,
                  before_header="%s -t %s" % (save, table), after_header="%s -t %s" % (save, table)),
    )


def _restore(runner, change, test):
    _save, restore = tools(change["ip_version"])
    cmd = [runner.which(restore), "-w", XTABLES_WAIT, "--noflush"]
    if test:
        cmd.append("--test")
    rc, out, err = runner.run(cmd, data=change["restore"])
    if rc != 0:
        raise EngineError("%s failed for table %s (nothing was changed, the transaction is atomic): %s"
                          % (" ".join(cmd), change["table"], (err or out).strip()), rc=rc, restore=change["restore"])


def test_chains(runner, change):
    """``iptables-restore --test`` of the exact text a write would give; commits nothing."""
    if change["restore"]:
        _restore(runner, change, True)


def apply_chains(runner, change):
    if change["restore"]:
        _restore(runner, change, False)
