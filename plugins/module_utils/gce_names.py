# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""Names and URLs of podnet.cluster.gce_routes (module_utils/gce holds the rest of its pure logic): the route
names the collection gives (prefix, encoded destination, hash), the list filter that finds them, and the paths of
networks and instances from full or partial Compute Engine URLs. Standard library only, free of I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Optional, Sequence, Tuple, Union

from ansible_collections.podnet.cluster.plugins.module_utils.text import limit as text_limit

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
DEFAULT_PREFIX = "podnet"
DEFAULT_ENDPOINT = "https://compute.googleapis.com/compute/v1/"
COMPUTE_SCOPE = "https://www.googleapis.com/auth/compute"
NAME_MAX = 63
PREFIX_MAX = 30
HASH_LEN = 8
ALT_SUFFIX = "-b"
NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
IPV6_STACKS = ("IPV4_IPV6", "IPV6_ONLY")
MAX_LISTED = 12
_NETWORK_URL = re.compile(r"(?:^|/)projects/([^/]+)/global/networks/([^/]+)$")
_NETWORK_SHORT = re.compile(r"^global/networks/([^/]+)$")
_INSTANCE_URL = re.compile(r"(?:^|/)projects/([^/]+)/zones/([^/]+)/instances/([^/]+)$")
_INSTANCE_SHORT = re.compile(r"^zones/([^/]+)/instances/([^/]+)$")
_ZONE_URL = re.compile(r"(?:^|/)zones/([^/]+)$")
_RESOURCE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")


class GceInputError(ValueError):
    """Invalid module input; ``problems`` lists every problem found, each naming the node or option."""

    def __init__(self, summary: str, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__("%s: %s" % (summary, limit(self.problems)))


def limit(items: Sequence[str], count: int = MAX_LISTED, sep: str = "; ") -> str:
    """The first ``count`` items joined, with how many more there are (module_utils/text, with gce's count)."""
    return text_limit(items, count, sep)


# --------------------------------------------------------------------------------------------- names

def default_description(prefix: str) -> str:
    """The default ownership marker written into every route's description."""
    return "podnet.cluster pod route (%s)" % prefix


def prefix_problem(prefix: str) -> Optional[str]:
    """Why ``prefix`` cannot start route names, or None."""
    if not prefix:
        return "route_prefix is empty"
    if len(prefix) > PREFIX_MAX:
        return ("route_prefix %r is %d characters; at most %d leave room in the 63-character route name for the "
                "destination" % (prefix, len(prefix), PREFIX_MAX))
    if not NAME_RE.match(prefix):
        return ("route_prefix %r is not a valid start of a Compute Engine name: it must match "
                "[a-z]([-a-z0-9]*[a-z0-9])? (lower-case letter first, no trailing '-')" % prefix)
    return None


def encode_cidr(net: Network) -> str:
    """A network in name characters: '10.244.1.0/24' -> '10-244-1-0-24', 'fd00:1::/64' -> 'fd00-1---64'.

    Injective: IPv4 gives five non-empty decimal groups; canonical IPv6 gives nine groups without '::'
    or an empty group with it; the last group is always the prefix length.
    """
    return str(net).lower().replace(".", "-").replace(":", "-").replace("/", "-")


def route_names(prefix: str, net: Network) -> Tuple[str, str]:
    """The two deterministic names of the route to ``net``: (primary, alternate).

    A changed next hop is inserted under the name not in use, before the old route is deleted.
    Names that would exceed 63 characters keep the start of the encoded network and end with the
    first 8 hex digits of its SHA-256; both names of one network use the same stem.
    """
    body = encode_cidr(net)
    stem = "%s-%s" % (prefix, body)
    if len(stem) + len(ALT_SUFFIX) > NAME_MAX:
        digest = hashlib.sha256(str(net).encode("ascii")).hexdigest()[:HASH_LEN]
        room = NAME_MAX - len(prefix) - 1 - 1 - HASH_LEN - len(ALT_SUFFIX)
        cut = body[:max(room, 0)].rstrip("-")
        stem = "%s-%s-%s" % (prefix, cut, digest) if cut else "%s-%s" % (prefix, digest)
    return stem, stem + ALT_SUFFIX


def list_filter(prefix: str) -> str:
    """The routes.list filter for every route whose name starts with our prefix (RE2, whole field).

    ``prefix`` is validated ([-a-z0-9] only), so it needs no RE2 escaping. Network and description are not
    part of the filter on purpose: route names are unique in the
    whole project, so a route of another network or without our marker that holds one of our
    names must be seen in the read phase (and in check mode) to be reported as a conflict.
    """
    return 'name eq "%s-.*"' % prefix


# ------------------------------------------------------------------------------------ URLs and paths

def network_path(value: str, project: str) -> str:
    """'default', 'global/networks/default', a partial or full URL -> 'projects/P/global/networks/N'."""
    text = (value or "").strip().rstrip("/")
    m = _NETWORK_URL.search(text)
    if m:
        return "projects/%s/global/networks/%s" % m.groups()
    m = _NETWORK_SHORT.match(text)
    if m:
        return "projects/%s/global/networks/%s" % (project, m.group(1))
    if text and "/" not in text:
        return "projects/%s/global/networks/%s" % (project, text)
    raise ValueError("%r is not a network name or URL (projects/P/global/networks/N)" % value)


def instance_path(value: str, zone: Optional[str], project: str) -> str:
    """An instance name (with ``zone``), 'zones/Z/instances/I', or a URL -> 'projects/P/zones/Z/instances/I'."""
    text = (value or "").strip().rstrip("/")
    m = _INSTANCE_URL.search(text)
    if m:
        return "projects/%s/zones/%s/instances/%s" % m.groups()
    m = _INSTANCE_SHORT.match(text)
    if m:
        return "projects/%s/zones/%s/instances/%s" % (project, m.group(1), m.group(2))
    if "/" in text or not text:
        raise ValueError("%r is not an instance name or URL (projects/P/zones/Z/instances/I)" % value)
    zone_name = zone_short(zone) if zone else ""
    if not zone_name:
        raise ValueError("instance %r is a bare name, so it needs a zone" % text)
    return "projects/%s/zones/%s/instances/%s" % (project, zone_name, text)


def zone_short(value: Optional[str]) -> str:
    """'us-central1-a' or a zone URL -> 'us-central1-a'."""
    text = (value or "").strip().rstrip("/")
    m = _ZONE_URL.search(text)
    return m.group(1) if m else text


def path_or_none(url: Optional[str], kind: str) -> Optional[str]:
    """The 'projects/...' path of a full or partial resource URL, or None."""
    if not url:
        return None
    pattern = _NETWORK_URL if kind == "network" else _INSTANCE_URL
    m = pattern.search(url.strip().rstrip("/"))
    if not m:
        return None
    return ("projects/%s/global/networks/%s" if kind == "network" else "projects/%s/zones/%s/instances/%s") % m.groups()


def short_instance(path: Optional[str]) -> str:
    """'projects/P/zones/Z/instances/I' -> 'Z/I' for messages."""
    if not path:
        return "-"
    m = _INSTANCE_URL.search(path)
    return "%s/%s" % (m.group(2), m.group(3)) if m else path
