# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Render structured iptables rules in the canonical form ``iptables-save`` prints.

Checked against iptables 1.8.9 (nf_tables and legacy) for the fields supported here:

* option order ``-s -d -i -o``, then the matches in the order given
  (``-m addrtype`` before ``-m comment`` here), then ``-j``;
* negation is printed before the option: ``! -d 10.0.0.0/8``,
  ``-m addrtype ! --dst-type LOCAL``;
* addresses are printed as networks with host bits cleared and an explicit
  prefix (``/32``, ``/128``), IPv6 compressed lower case; ``0.0.0.0/0`` and
  ``::/0`` are not printed at all;
* a comment made only of ``[A-Za-z0-9_-]`` is printed bare, anything else in
  double quotes with ``"``, ``'`` and ``\\`` escaped by a backslash.

Standard library only (Python 3.8+); pure functions, unit-testable.
"""

from __future__ import annotations

import ipaddress
import re

from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}

ADDRTYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST",
             "BLACKHOLE", "UNREACHABLE", "PROHIBIT", "THROW", "NAT", "XRESOLVE")

_NO_QUOTE = re.compile(r"^[A-Za-z0-9_-]+$")
_CHAIN_RE = re.compile(r"^[A-Za-z0-9_.-]{1,28}$")
MAX_COMMENT = 256

RULE_FIELDS = ("source", "destination", "in_interface", "out_interface", "protocol", "dport", "src_type",
               "dst_type", "comment", "jump")
# Protocols whose destination port can be matched (``-p PROTO -m PROTO --dport N``).
PORT_PROTOCOLS = ("udp", "tcp")


class RuleError(ValueError):
    """A structured rule that cannot be rendered; the message names the field."""


def quote_comment(value):
    """Quote a comment exactly as iptables-save (xtables_save_string) does."""
    if _NO_QUOTE.match(value):
        return value
    out = []
    for ch in value:
        if ch in "\"'\\":
            out.append("\\")
        out.append(ch)
    return '"%s"' % "".join(out)


def split_negation(value):
    """``"!10.0.0.0/8"`` / ``"! 10.0.0.0/8"`` -> ``(True, "10.0.0.0/8")``."""
    if value is None:
        return False, None
    text = str(value).strip()
    if text.startswith("!"):
        return True, text[1:].strip()
    return False, text


def canonical_network(value, ip_version):
    """Network text as iptables-save prints it, or ``None`` for 0.0.0.0/0 / ::/0."""
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise RuleError("%r is not an address or network: %s" % (value, exc))
    if net.version != int(ip_version):
        raise RuleError("%s is an IPv%d network in an IPv%s rule" % (net, net.version, ip_version))
    if net.prefixlen == 0:
        return None
    return "%s/%d" % (net.network_address, net.prefixlen)


def valid_chain_name(name):
    return bool(name) and bool(_CHAIN_RE.match(name)) and not name.startswith("-")


def render_rule(rule, chain, ip_version, verb="-A"):
    """Render one structured rule (dict) as a line of iptables-save / iptables-restore.

    Supported keys: ``source``, ``destination``, ``in_interface``, ``out_interface``
    (each negated by a leading ``!``), ``protocol`` (udp, tcp) with ``dport``, ``src_type``/``dst_type`` (addrtype, negated by a
    leading ``!``), ``comment`` and ``jump``. Unknown keys with a non-null value are
    an error. ``verb`` is ``-A``, ``-D`` or ``-I``.
    """
    unknown = [k for k, v in rule.items() if k not in RULE_FIELDS and v is not None]
    if unknown:
        raise RuleError("unsupported rule field(s): %s" % ", ".join(sorted(unknown)))
    parts = [verb, chain]
    if verb == "-I":
        parts.append("1")
    for key, opt in (("source", "-s"), ("destination", "-d")):
        neg, val = split_negation(rule.get(key))
        if val in (None, ""):
            continue
        text = canonical_network(val, ip_version)
        if text is None:
            if neg:
                raise RuleError("%s: negating %s matches nothing" % (key, val))
            continue
        if neg:
            parts.append("!")
        parts.extend([opt, text])
    for key, opt in (("in_interface", "-i"), ("out_interface", "-o")):
        neg, val = split_negation(rule.get(key))
        if val in (None, ""):
            continue
        # iptables' wildcard: a trailing '+' matches every interface whose name starts with the rest
        problem = ifname_problem(val[:-1]) if val.endswith("+") and val != "+" else (
            None if val == "+" else ifname_problem(val))
        if problem:
            raise RuleError("%s %r %s" % (key, val, problem))
        if neg:
            parts.append("!")
        parts.extend([opt, val])
    proto, dport = rule.get("protocol"), rule.get("dport")
    if proto not in (None, ""):
        if proto not in PORT_PROTOCOLS:
            raise RuleError("protocol %r is not one of %s" % (proto, ", ".join(PORT_PROTOCOLS)))
        parts.extend(["-p", proto])
        if dport not in (None, ""):
            if isinstance(dport, bool) or not str(dport).isdigit() or not 1 <= int(dport) <= 65535:
                raise RuleError("dport %r is not a port number 1..65535" % (dport,))
            parts.extend(["-m", proto, "--dport", str(int(dport))])
    elif dport not in (None, ""):
        raise RuleError("dport %r needs a protocol (udp or tcp)" % (dport,))
    addrtype = []
    for key, opt in (("src_type", "--src-type"), ("dst_type", "--dst-type")):
        neg, val = split_negation(rule.get(key))
        if val in (None, ""):
            continue
        val = val.upper()
        if val not in ADDRTYPES:
            raise RuleError("%s %r is not an address type (one of %s)" % (key, val, ", ".join(ADDRTYPES)))
        if neg:
            addrtype.append("!")
        addrtype.extend([opt, val])
    if addrtype:
        parts.extend(["-m", "addrtype"] + addrtype)
    comment = rule.get("comment")
    if comment not in (None, ""):
        comment = str(comment)
        if len(comment) > MAX_COMMENT or "\n" in comment:
            raise RuleError("comment %r is longer than %d characters or spans lines" % (comment, MAX_COMMENT))
        parts.extend(["-m", "comment", "--comment", quote_comment(comment)])
    jump = rule.get("jump")
    if not jump:
        raise RuleError("a rule needs a jump target")
    if not valid_chain_name(str(jump)):
        raise RuleError("jump target %r is not a valid chain or target name" % jump)
    parts.extend(["-j", str(jump)])
    return " ".join(parts)


def normalize_line(line):
    """Normalised rule line, the fallback comparison applied to both sides.

    White space is collapsed and the value after ``-s``/``-d`` is re-rendered through
    ``ipaddress`` (so an address form iptables prints differently from Python, such as
    an IPv4-mapped IPv6 address, still compares equal).
    """
    tokens = line.split()
    for i, tok in enumerate(tokens[:-1]):
        if tok in ("-s", "-d", "--source", "--destination"):
            try:
                net = ipaddress.ip_network(tokens[i + 1], strict=False)
            except ValueError:
                continue
            tokens[i + 1] = "%s/%d" % (net.network_address, net.prefixlen)
    return " ".join(tokens)


def parse_save(text):
    """Parse the output of ``iptables-save -t TABLE``.

    Returns ``(chains, order)``: ``chains`` maps a chain name to
    ``{"policy": str, "rules": [line, ...]}`` where each line is the full
    ``-A CHAIN ...`` text; ``order`` is the list of chain names as declared.
    """
    chains = {}
    order = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("*") or line == "COMMIT":
            continue
        if line.startswith(":"):
            fields = line[1:].split()
            name = fields[0]
            chains[name] = {"policy": fields[1] if len(fields) > 1 else "-", "rules": []}
            order.append(name)
        elif line.startswith("-A "):
            name = line.split()[1]
            chains.setdefault(name, {"policy": "-", "rules": []})
            if name not in order:
                order.append(name)
            chains[name]["rules"].append(normalize_line(line))
    return chains, order


def rule_target(line):
    """The ``-j``/``-g`` target of a saved rule line, or ``None``."""
    tokens = line.split()
    for i, tok in enumerate(tokens[:-1]):
        if tok in ("-j", "-g", "--jump", "--goto"):
            return tokens[i + 1]
    return None


def has_comment(line, comment):
    """True when a saved rule line carries ``-m comment --comment COMMENT``."""
    return re.search(r"(^|\s)--comment %s(\s|$)" % re.escape(quote_comment(comment)), line) is not None
