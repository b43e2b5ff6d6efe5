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
  - Everything is written in one C(iptables-restore -w --noflush) (C(ip6tables-restore) for I(ip_version=6)), an
    atomic transaction that waits for the xtables lock. In check mode the same text goes to C(iptables-restore
    --test), which validates it against the kernel and commits nothing.
version_added: 0.1.0
author:
  - podnet.cluster maintainers
requirements:
  - iptables (C(iptables-save), C(iptables-restore), and the ip6tables variants for IPv6) on the managed node
extends_documentation_fragment:
  - podnet.cluster.attributes
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
  returned: with --diff
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.podnet.cluster.plugins.module_utils.engine.chains import apply_chains, plan_chains, test_chains
from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import (
    EngineError,
    ModuleRunner,
    diff_only,
    fail_module,
)


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
    runner = ModuleRunner(module)
    try:
        change = plan_chains(runner, p["ip_version"], p["table"], p["chains"], p["jump_comment"], p["state"])
        if change["changed"]:
            if module.check_mode:
                test_chains(runner, change)
            else:
                apply_chains(runner, change)
    except EngineError as exc:
        fail_module(module, exc)
    module.exit_json(**diff_only(module, change))


if __name__ == "__main__":
    main()
