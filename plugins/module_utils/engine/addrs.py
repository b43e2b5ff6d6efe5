# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Addresses and networks as (family, integer[, prefix length]) and their canonical text, for the engines that
parse thousands of them (routes, overlay). Standard library only (Python 3.8+); no other engine module, so that a
module importing it carries nothing more.
"""

from __future__ import annotations

import ipaddress
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

# Addresses and networks are handled as (family, integer[, prefix length]) and their canonical text: parsing
# thousands of them with ipaddress objects costs more than the whole reconcile. The text is taken as it is when
# it is already canonical (inet_ntop gives it back, which is how iproute2 prints it); anything else goes through
# ipaddress, which gives the same result (and the same error messages) as before.
_FAMILIES = {4: (AF_INET, 32), 6: (AF_INET6, 128)}


def _canonical_address(text):
    """(family, int, text) of an address already in canonical form, else None (the caller uses ipaddress)."""
    fam = 6 if ":" in text else 4
    if fam == 6 and "." in text:
        return None
    af = _FAMILIES[fam][0]
    try:
        packed = inet_pton(af, text)
    except (OSError, ValueError):
        return None
    if inet_ntop(af, packed) != text:
        return None
    return fam, int.from_bytes(packed, "big"), text


def parse_address(text):
    """(family, int, canonical text) of an IP address; ValueError as ipaddress.ip_address raises it."""
    fast = _canonical_address(text)
    if fast is not None:
        return fast
    ip = ipaddress.ip_address(text)
    return ip.version, int(ip), str(ip)


def parse_network(text, strict=True):
    """(family, int, prefix length, canonical text) of a network; ValueError as ipaddress.ip_network raises it.

    ``text`` without a prefix length is a host route (as iproute2 prints /32 and /128 routes).
    """
    addr, sep, plen = text.partition("/")
    if plen.isascii() and plen.isdigit() and (len(plen) == 1 or plen[0] != "0"):
        fast = _canonical_address(addr)
        if fast is not None:
            fam, num, _unused = fast
            bits = _FAMILIES[fam][1]
            length = int(plen)
            if length <= bits:
                host = num & ((1 << (bits - length)) - 1)
                if not host:
                    return fam, num, length, text
                if not strict:
                    return fam, num ^ host, length, "%s/%d" % (inet_ntop(_FAMILIES[fam][0], (num ^ host).to_bytes(
                        bits // 8, "big")), length)
    elif not sep:
        fast = _canonical_address(addr)
        if fast is not None:
            fam, num, _unused = fast
            return fam, num, _FAMILIES[fam][1], "%s/%d" % (addr, _FAMILIES[fam][1])
    net = ipaddress.ip_network(text, strict=strict)
    return net.version, int(net.network_address), net.prefixlen, str(net)
