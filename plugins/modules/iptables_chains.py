#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# Apache License 2.0 (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: iptables_chains
short_description: Own whole iptables chains and the jump rules to them, written atomically
description:
  - Owns the listed chains of one table wholesale (for example C(PODNET-MASQ) in C(nat) and C(PODNET-FORWARD) in
    C(filter)) and the jump rules that lead to them from built-in chains.
  - Rules are given as structured data and rendered in exactly the canonical form C(iptables-save) prints
    (checked with iptables 1.8.9, nf_tables and legacy back ends), so the saved chain is compared with the desired
    text line by line (whitespace-normalised) and a second run changes nothing. A chain that differs in any way
    (including a manual edit) is rewritten as a whole.
  - Jump rules carry the comment I(jump_comment) (default C(podnet.cluster)) and are identified by it and by their
    target. A missing jump is inserted at the top or appended; an existing one is never duplicated; one of ours
    that is no longer wanted (for example after the pod CIDR changed) is deleted. Every other rule in the built-in
    chains, and every other chain, is left alone.
  - Everything is written in one C(iptables-restore --noflush) (C(ip6tables-restore) for I(ip_version=6)), an
    atomic transaction. Nothing is written in check mode.
version_added: 0.1.0
author:
  - podnet.cluster maintainers
requirements:
  - iptables (C(iptables-save), C(iptables-restore), and the ip6tables variants for IPv6) on the managed node
options:
  ip_version:
    description:
      - Address family; C(6) uses C(ip6tables-save)/C(ip6tables-restore).
    type: int
    choices: [4, 6]
    default: 4
  table:
    description:
      - The table holding the chains.
    type: str
    choices: [filter, nat, mangle, raw]
    default: filter
  chains:
    description:
      - The chains the collection owns in this table. With I(state=absent) only C(name) is used.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Chain name (1-28 characters of C([A-Za-z0-9_.-]), not a built-in chain).
        type: str
        required: true
      rules:
        description:
          - The whole content of the chain, in order. Each rule is a dict with the optional match fields
            C(source), C(destination) (address or network), C(in_interface), C(out_interface) (interface name,
            C(+) wildcard allowed), C(src_type), C(dst_type) (address type of the C(addrtype) match, for example
            C(LOCAL)), C(comment), and the required C(jump) (target, for example C(RETURN), C(MASQUERADE),
            C(ACCEPT) or a chain).
          - >-
            B(Negation.) A value starting with C(!) negates that match, for example C(destination: "!10.0.0.0/8")
            renders C(! -d 10.0.0.0/8) and C(dst_type: "!LOCAL") renders C(-m addrtype ! --dst-type LOCAL).
        type: list
        elements: dict
        default: []
      jumps:
        description:
          - Jump rules to this chain. Each is a dict with C(from) (a built-in chain of I(table), required),
            C(position) (C(insert) at the top, or C(append); default C(append)) and the same optional match fields
            as a rule (no C(comment), no C(jump); the comment is I(jump_comment), the target is this chain).
        type: list
        elements: dict
        default: []
  jump_comment:
    description:
      - The comment that marks the collection's jump rules.
    type: str
    default: podnet.cluster
  state:
    description:
      - C(present) makes the chains and jumps exactly as given.
      - C(absent) deletes the marked jump rules to the listed chains, then flushes and deletes the chains. It fails
        before any change when an unmarked rule still jumps to one of them.
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode and diff mode.
  - Addresses are normalised as iptables does (host bits cleared, C(/32) and C(/128) added, C(0.0.0.0/0) dropped).
"""

EXAMPLES = r"""
- name: ip-masq-agent style masquerade for this node's pods
  podnet.cluster.iptables_chains:
    table: nat
    chains:
      - name: PODNET-MASQ
        rules:
          - {destination: 10.244.0.0/16, comment: "podnet: cluster", jump: RETURN}
          - {destination: 192.168.0.0/24, comment: "podnet: node network", jump: RETURN}
          - {comment: "podnet: masquerade", jump: MASQUERADE}
        jumps:
          - {from: POSTROUTING, source: 10.244.1.0/24, dst_type: "!LOCAL"}

- name: Accept pod traffic in FORWARD even when its policy is DROP
  podnet.cluster.iptables_chains:
    table: filter
    chains:
      - name: PODNET-FORWARD
        rules:
          - {source: 10.244.0.0/16, jump: ACCEPT}
          - {destination: 10.244.0.0/16, jump: ACCEPT}
        jumps:
          - {from: FORWARD, position: insert}

- name: Same for IPv6
  podnet.cluster.iptables_chains:
    ip_version: 6
    table: filter
    chains:
      - name: PODNET-FORWARD
        rules:
          - {source: "fd00:10:244::/48", jump: ACCEPT}
          - {destination: "fd00:10:244::/48", jump: ACCEPT}
        jumps:
          - {from: FORWARD, position: insert}

- name: Tear down
  podnet.cluster.iptables_chains:
    table: nat
    chains: [{name: PODNET-MASQ}]
    state: absent
"""

RETURN = r"""
table:
  description: The table.
  returned: always
  type: str
  sample: nat
ip_version:
  description: The address family.
  returned: always
  type: int
  sample: 4
chains_written:
  description: Chains (re)written because they were missing or differed.
  returned: always
  type: list
  elements: str
  sample: [PODNET-MASQ]
chains_deleted:
  description: Chains flushed and deleted (state=absent).
  returned: always
  type: list
  elements: str
jumps_added:
  description: Jump rules added, as restore lines.
  returned: always
  type: list
  elements: str
  sample: ['-I FORWARD 1 -m comment --comment "podnet.cluster" -j PODNET-FORWARD']
jumps_removed:
  description: Marked jump rules deleted (duplicates, no longer wanted, or state=absent), as restore lines.
  returned: always
  type: list
  elements: str
rules:
  description: The desired content of each chain, as iptables-save lines.
  returned: always
  type: dict
restore:
  description: The text given (or, in check mode, that would be given) to iptables-restore --noflush; empty when nothing changes.
  returned: always
  type: str
diff:
  description: Before and after text of the owned chains and marked jumps, in iptables-save form.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
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

MATCH_FIELDS = ("source", "destination", "in_interface", "out_interface", "src_type", "dst_type")


def _section(chain_names, chains, jump_lines):
    lines = []
    for name in chain_names:
        if name not in chains:
            continue
        lines.append(":%s -" % name)
        lines.extend(chains[name])
    lines.extend(jump_lines)
    return "\n".join(lines) + ("\n" if lines else "")


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ip_version=dict(type="int", choices=[4, 6], default=4),
            table=dict(type="str", choices=["filter", "nat", "mangle", "raw"], default="filter"),
            chains=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                rules=dict(type="list", elements="dict", default=[]),
                jumps=dict(type="list", elements="dict", default=[]),
            )),
            jump_comment=dict(type="str", default="podnet.cluster"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ipv = p["ip_version"]
    table = p["table"]
    state = p["state"]
    mark = p["jump_comment"]
    prefix = "ip6tables" if ipv == 6 else "iptables"
    builtins = BUILTIN_CHAINS[table]

    # ---- desired state, validated before anything is read or written
    names = []
    desired = {}
    desired_jumps = []  # (from_chain, position, rendered -A line)
    for chain in p["chains"]:
        name = chain["name"]
        if not valid_chain_name(name) or name in builtins or name.upper() in (
                "ACCEPT", "DROP", "RETURN", "QUEUE", "MASQUERADE", "SNAT", "DNAT", "REJECT"):
            module.fail_json(msg="chain name %r in table %s is not allowed (1-28 characters of A-Z a-z 0-9 _ . -, "
                                 "not a built-in chain or target)" % (name, table))
        if name in desired:
            module.fail_json(msg="chain %s is listed twice for table %s" % (name, table))
        names.append(name)
        lines = []
        for idx, rule in enumerate(chain["rules"] or []):
            try:
                lines.append(render_rule(rule, name, ipv))
            except RuleError as exc:
                module.fail_json(msg="chain %s (table %s, IPv%d), rule %d %r: %s" % (name, table, ipv, idx + 1, rule, exc))
        desired[name] = lines
        for idx, jump in enumerate(chain["jumps"] or []):
            jump = dict(jump)
            src = jump.pop("from", None)
            position = jump.pop("position", None) or "append"
            bad = [k for k, v in jump.items() if k not in MATCH_FIELDS and v is not None]
            if bad:
                module.fail_json(msg="jump %d to chain %s: unsupported field(s) %s (allowed: from, position, %s)"
                                     % (idx + 1, name, ", ".join(sorted(bad)), ", ".join(MATCH_FIELDS)))
            if src not in builtins:
                module.fail_json(msg="jump %d to chain %s: from=%r is not a built-in chain of table %s (%s)"
                                     % (idx + 1, name, src, table, ", ".join(builtins)))
            if position not in ("insert", "append"):
                module.fail_json(msg="jump %d to chain %s: position %r is not insert or append" % (idx + 1, name, position))
            jump["comment"] = mark
            jump["jump"] = name
            try:
                line = render_rule(jump, src, ipv)
            except RuleError as exc:
                module.fail_json(msg="jump %d from %s to chain %s (table %s, IPv%d): %s" % (idx + 1, src, name, table, ipv, exc))
            if any(j[2] == line for j in desired_jumps):
                module.fail_json(msg="jump from %s to chain %s is listed twice: %s" % (src, name, line))
            desired_jumps.append((src, position, line))

    # ---- current state
    save_bin = module.get_bin_path(prefix + "-save", required=True)
    restore_bin = module.get_bin_path(prefix + "-restore", required=True)
    rc, out, err = module.run_command([save_bin, "-t", table], environ_update={"LC_ALL": "C"})
    if rc != 0:
        module.fail_json(msg="%s -t %s failed: %s" % (save_bin, table, (err or out).strip()), rc=rc)
    current, _order = parse_save(out)
    ours = set(names)

    current_ours = {n: current[n]["rules"] for n in names if n in current}
    current_jumps = []   # (chain, line) marked rules to our chains, outside our chains
    foreign_refs = []    # unmarked rules elsewhere that jump to our chains
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
            # not wanted, or duplicated: delete every copy by its spec (-D removes the first match,
            # so deleting by number could hit a rule inserted meanwhile) and add one back below
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
            module.fail_json(msg="cannot delete chain(s) %s in table %s (IPv%d): rules not marked %r still jump to "
                                 "them: %s" % (", ".join(sorted(current_ours)), table, ipv, mark, "; ".join(foreign_refs)))
        for _cname, line in current_jumps:
            jumps_removed.append("-D" + line[2:])
        restore.extend(jumps_removed)
        for name in names:
            if name in current_ours:
                chains_deleted.append(name)
                restore.append("-F %s" % name)
        for name in chains_deleted:
            restore.append("-X %s" % name)
        after_chains = {}
        after_jumps = []

    before_text = _section(names, {n: [normalize_line(x) for x in v] for n, v in current_ours.items()},
                           [line for _c, line in current_jumps])
    after_text = _section(names, after_chains, after_jumps)
    restore_text = ""
    if restore:
        restore_text = "*%s\n%s\nCOMMIT\n" % (table, "\n".join(restore))
    changed = bool(restore)

    if changed and not module.check_mode:
        rc, out, err = module.run_command([restore_bin, "--noflush"], data=restore_text, binary_data=True,
                                          environ_update={"LC_ALL": "C"})
        if rc != 0:
            module.fail_json(msg="%s --noflush failed for table %s (nothing was changed, the transaction is atomic): %s"
                                 % (restore_bin, table, (err or out).strip()), rc=rc, restore=restore_text)

    module.exit_json(
        changed=changed,
        table=table,
        ip_version=ipv,
        chains_written=chains_written,
        chains_deleted=chains_deleted,
        jumps_added=jumps_added,
        jumps_removed=jumps_removed,
        rules={n: desired[n] for n in names},
        restore=restore_text,
        diff=dict(before=before_text, after=after_text,
                  before_header="%s -t %s" % (prefix, table), after_header="%s -t %s" % (prefix, table)),
    )


if __name__ == "__main__":
    main()
