# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The node document: one node's whole desired state, computed on the controller from the plan.

The action ``podnet.cluster.node_state`` builds it for each host and hands it, unchanged, to the module of
the same name, which checks it (check mode: the preflight) or applies it on the node and keeps it under
``/etc/podnet/``. Pure functions; the settings are the role's ``podnet_*`` variables.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Mapping, Optional

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.podnet.cluster.plugins.module_utils.engine import DOCUMENT_VERSION
from ansible_collections.podnet.cluster.plugins.module_utils.ifname import ifname_problem
from ansible_collections.podnet.cluster.plugins.module_utils.text import names as names_text
from ansible_collections.podnet.cluster.plugins.plugin_utils.node_config import (
    FORWARD_CHAIN,
    MASQ_CHAIN,
    VXLAN_DEFAULT_PORT,
    node_network,
    overlay_config,
    runtime_config,
)
from ansible_collections.podnet.cluster.plugins.plugin_utils.plan import PlanError, parse_network, require_netaddr

FABRICS = ("l2_routes", "router", "gce", "l2_bridge", "vxlan")
# Fabrics whose nodes carry each other's pods in a static VXLAN overlay.
OVERLAY_FABRICS = ("vxlan",)
# Fabrics whose nodes route to each other's pod subnets themselves.
PEER_ROUTE_FABRICS = ("l2_routes",)
# Fabrics whose pods share one on-link prefix, the cluster network, with the uplink enslaved in the bridge.
SHARED_SEGMENT_FABRICS = ("l2_bridge",)
# The CNI spec's network name.
CNI_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DEFAULTS: Dict[str, Any] = {
    "fabric": "l2_routes",
    "bridge": "cbr0",
    "bridge_mtu": 0,
    "runtimes": ["docker", "cni"],
    "masquerade": True,
    "nonmasquerade_cidrs": [],
    "route_protocol": 158,
    "sysctl_file": "/etc/sysctl.d/90-podnet-cluster.conf",
    "sysctl_conflicts": "fail",
    "docker_config_file": "/etc/docker/daemon.json",
    "cni_conf_dir": "/etc/cni/net.d",
    "cni_conflist_name": "10-podnet.conflist",
    "cni_network_name": "podnet",
    "cni_version": "1.0.0",
    "state_dir": "/etc/podnet",
    "lib_dir": "/var/lib/podnet",
    "units": True,
    "systemd_dir": "/etc/systemd/system",
    "allow_readdress": False,
    "gce_network_cidrs": [],
    "uplink": "",
    "l2_bridge_check_address": [],
    "l2_bridge_check_method": "ping",
    "l2_bridge_check_timeout": 5,
    "l2_bridge_rollback_timeout": 30,
    "l2_bridge_allow_dynamic_address": False,
    "vxlan_vni": 1,
    "vxlan_port": VXLAN_DEFAULT_PORT,
    "vxlan_direct_routing": False,
    # "" leaves the device's checksum offload as the kernel made it
    "vxlan_tx_checksum_offload": "",
}

# The settings that are booleans (their default is one): Ansible's words for one (yes, on, "true", 1) become True or
# False before the document is built, as the role's ``| bool`` made them.
BOOLEAN_SETTINGS = tuple(key for key, value in DEFAULTS.items() if isinstance(value, bool))


def as_read(settings: Mapping[str, Any]) -> Dict[str, Any]:
    """Settings (by name) as the node role reads them: a boolean setting given in Ansible's words for one is True or
    False (an unknown word is False, as the role's ``| bool`` made it); the others as they are."""
    return {key: boolean(value, strict=False) if key in BOOLEAN_SETTINGS else value for key, value in settings.items()}


DOCKER_REFUSE = {
    "bip": "Docker refuses --bip together with --bridge: podnet.cluster attaches Docker to the bridge it manages "
           "(%s, which holds the node's pod gateway), so remove \"bip\" from the file by hand (podnet.cluster never "
           "deletes keys it did not write)",
    "ipv6": "podnet.cluster attaches Docker for IPv4 only: dockerd 20.10 with ipv6 replaces the bridge's IPv6 pod "
            "gateway (%s) with its own; remove \"ipv6\" (IPv6 pods come from CNI)",
    "fixed-cidr-v6": "podnet.cluster attaches Docker for IPv4 only: dockerd with fixed-cidr-v6 takes over the "
                     "bridge's IPv6 gateway (%s); remove \"fixed-cidr-v6\" (IPv6 pods come from CNI)",
}


def peer_routes(plan: Mapping[str, Any]) -> List[List[str]]:
    """[[node, "DST via GATEWAY peer NODE"], ...] for every node's pod CIDRs, once for the whole cluster.

    Each node's document takes every entry but its own: O(peers) string work per node, no address parsing.
    """
    out: List[List[str]] = []
    for name, entry in (plan.get("nodes") or {}).items():
        via = {}
        for ip in entry.get("node_ips") or []:
            via.setdefault(6 if ":" in ip else 4, ip.split("/")[0])
        for cidr in entry.get("pod_cidrs") or []:
            family = 6 if ":" in cidr else 4
            if family not in via:
                raise PlanError(["host %s: no %s node IP to route its pod subnet %s through"
                                 % (name, "IPv4" if family == 4 else "IPv6", cidr)])
            out.append([name, "%s via %s peer %s" % (cidr, via[family], name)])
    return out


def settings_errors(host: str, settings: Mapping[str, Any]) -> List[str]:
    """Every problem of the settings, naming the host and the variable."""
    errors = []
    if settings["fabric"] not in FABRICS:
        errors.append("host %s: podnet_fabric=%r is not one of %s" % (host, settings["fabric"], ", ".join(FABRICS)))
    bridge = settings["bridge"]
    problem = ifname_problem(bridge)
    if problem:
        errors.append("host %s: podnet_bridge=%r %s" % (host, bridge, problem))
    runtimes = settings["runtimes"]
    if not isinstance(runtimes, list) or any(r not in ("docker", "cni") for r in runtimes):
        errors.append("host %s: podnet_runtimes=%r: a list of docker and/or cni" % (host, runtimes))
    cidrs = settings["nonmasquerade_cidrs"]
    if not isinstance(cidrs, list):
        errors.append("host %s: podnet_nonmasquerade_cidrs=%r is not a list of networks in CIDR form"
                      % (host, cidrs))
    else:
        for i, value in enumerate(cidrs):
            if not isinstance(value, str):
                errors.append("host %s: podnet_nonmasquerade_cidrs[%d]: %r is not a network in CIDR form "
                              "(address/prefix)" % (host, i, value))
            else:
                parse_network(value, "host %s: podnet_nonmasquerade_cidrs[%d]" % (host, i), errors)
    proto = settings["route_protocol"]
    if isinstance(proto, bool) or not isinstance(proto, int) or not 5 <= proto <= 255:
        errors.append("host %s: podnet_route_protocol=%r is not a number from 5 to 255" % (host, proto))
    mtu = settings["bridge_mtu"]
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not (mtu == 0 or 68 <= mtu <= 65535):
        errors.append("host %s: podnet_bridge_mtu=%r: 0 (the uplink's MTU) or 68..65535" % (host, mtu))
    for key in ("state_dir", "lib_dir", "systemd_dir", "sysctl_file", "docker_config_file", "cni_conf_dir"):
        value = settings[key]
        if not isinstance(value, str) or not value.startswith("/") or "\n" in value or " " in value:
            errors.append("host %s: podnet_%s=%r is not an absolute path without blanks" % (host, key, value))
    name = settings["cni_conflist_name"]
    if not isinstance(name, str) or "/" in name or not name.endswith(".conflist"):
        errors.append("host %s: podnet_cni_conflist_name=%r: a file name ending in .conflist" % (host, name))
    network = settings["cni_network_name"]
    if not isinstance(network, str) or not CNI_NAME.match(network):
        errors.append("host %s: podnet_cni_network_name=%r: a CNI network name (letters, digits, _ . -, starting with "
                      "a letter or digit; host-local keeps its leases in a directory of that name)" % (host, network))
    version = settings["cni_version"]
    if not isinstance(version, str) or not re.match(r"^\d+\.\d+\.\d+$", version):
        errors.append("host %s: podnet_cni_version=%r: a CNI spec version such as 1.0.0" % (host, version))
    if settings["sysctl_conflicts"] not in ("fail", "warn", "ignore"):
        errors.append("host %s: podnet_sysctl_conflicts=%r: fail, warn or ignore" % (host, settings["sysctl_conflicts"]))
    errors.extend(uplink_errors(host, settings))
    errors.extend(vxlan_errors(host, settings))
    return errors


def _tristate(value: Any) -> Any:
    """True, False or "" (leave as is) of a setting given as a bool or its text; anything else as it is."""
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.strip().lower() in ("true", "yes", "on", "1")
    return value


def vxlan_errors(host: str, settings: Mapping[str, Any]) -> List[str]:
    """Problems of the vxlan settings (podnet_vxlan_*), checked in every fabric."""
    errors = []
    vni = settings["vxlan_vni"]
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= 16777215:
        errors.append("host %s: podnet_vxlan_vni=%r is not a VXLAN network identifier 1..16777215 (24 bits: "
                      "2^24 - 1 = 16777215)" % (host, vni))
    port = settings["vxlan_port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        errors.append("host %s: podnet_vxlan_port=%r is not a UDP port 1..65535 (4789 is the IANA port, flannel "
                      "uses 8472)" % (host, port))
    if not isinstance(settings["vxlan_direct_routing"], bool):
        errors.append("host %s: podnet_vxlan_direct_routing=%r is not true or false"
                      % (host, settings["vxlan_direct_routing"]))
    if settings["vxlan_tx_checksum_offload"] not in (True, False, ""):
        errors.append("host %s: podnet_vxlan_tx_checksum_offload=%r: true, false, or empty (leave as is)"
                      % (host, settings["vxlan_tx_checksum_offload"]))
    return errors


def uplink_errors(host: str, settings: Mapping[str, Any]) -> List[str]:
    """Problems of the l2_bridge settings (podnet_uplink, podnet_l2_bridge_*), checked in every fabric."""
    errors = []
    uplink = settings["uplink"]
    problem = ifname_problem(uplink) if uplink != "" else None
    if problem:
        errors.append("host %s: podnet_uplink=%r %s (leave it empty for the interface that holds the node IP)"
                      % (host, uplink, problem))
    elif uplink and uplink == settings["bridge"]:
        errors.append("host %s: podnet_uplink=%r is the bridge itself (podnet_bridge); name the interface that "
                      "carries the node IP" % (host, uplink))
    checks = settings["l2_bridge_check_address"]
    if not isinstance(checks, list):
        errors.append("host %s: podnet_l2_bridge_check_address=%r is not a list of addresses" % (host, checks))
    else:
        for i, value in enumerate(checks):
            try:
                ipaddress.ip_address(str(value))
            except ValueError:
                errors.append("host %s: podnet_l2_bridge_check_address[%d]: %r is not an IP address (no prefix)"
                              % (host, i, value))
    if settings["l2_bridge_check_method"] not in ("ping", "neigh"):
        errors.append("host %s: podnet_l2_bridge_check_method=%r: ping or neigh"
                      % (host, settings["l2_bridge_check_method"]))
    check, rollback = settings["l2_bridge_check_timeout"], settings["l2_bridge_rollback_timeout"]
    bad = False
    for var, value in (("l2_bridge_check_timeout", check), ("l2_bridge_rollback_timeout", rollback)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append("host %s: podnet_%s=%r is not a whole number of seconds (1 or more)" % (host, var, value))
            bad = True
    if not bad and rollback <= check:
        errors.append("host %s: podnet_l2_bridge_rollback_timeout=%d must be greater than "
                      "podnet_l2_bridge_check_timeout=%d: the check alone may take %d s, and the controller then "
                      "needs a new connection to confirm" % (host, rollback, check, check))
    return errors


def _number(value: Any) -> Any:
    """An int given as text (``-e podnet_route_protocol=158``) as the int; anything else as it is."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value


def _hosts_text(hosts: List[str], limit: int = 10) -> str:
    return ("host %s" if len(hosts) == 1 else "hosts %s") % names_text(sorted(hosts), limit)


def fabric_errors(fabrics: Mapping[str, str], routers: List[str], router_group: str = "podnet_routers",
                  gce_vars: Optional[Mapping[str, Mapping[str, Any]]] = None) -> List[str]:
    """What each node's fabric needs and the inventory does not give, naming the hosts and the variable or group.

    ``fabrics``: each node's podnet_fabric; ``routers``: the hosts of the router group; ``gce_vars``: for the nodes of
    fabric gce, their podnet_gce_project, podnet_gce_zone, podnet_gce_instance (and the inventory plugin's zone and
    selfLink). A fabric with nobody to carry the routes would remove every node's peer routes and add them nowhere.
    """
    errors = []
    routed = [h for h, f in fabrics.items() if f == "router"]
    if routed and not routers:
        errors.append("%s: podnet_fabric is router, but the group %s (podnet_router_group) has no host: put the Linux "
                      "router(s) that carry the pod subnets between the nodes in it (each shares a link with every "
                      "node; the routes go via the node IPs), or choose another fabric. Nothing was changed, and the "
                      "nodes keep their routes" % (_hosts_text(routed), router_group))
    gce = [h for h, f in fabrics.items() if f == "gce"]
    if gce:
        values = dict(gce_vars or {})
        no_project = [h for h in gce if not (values.get(h) or {}).get("podnet_gce_project")]
        if no_project:
            errors.append("%s: podnet_fabric is gce, but podnet_gce_project is not set: set it to the Compute Engine "
                          "project of the VMs (with podnet_gce_network, and podnet_gce_zone or podnet_gce_instance "
                          "on each node). Nothing was changed, and the nodes keep their routes"
                          % _hosts_text(no_project))
        no_zone = []
        for host in gce:
            v = values.get(host) or {}
            instance = str(v.get("podnet_gce_instance") or v.get("selfLink") or "")
            if not (v.get("podnet_gce_zone") or v.get("zone") or "zones/" in instance):
                no_zone.append(host)
        if no_zone:
            errors.append("%s: podnet_fabric is gce, but podnet_gce_zone is not set (nor podnet_gce_instance as "
                          "zones/ZONE/instances/NAME or the VM's selfLink): the route's next hop is the node's VM, "
                          "named by its zone. Nothing was changed" % _hosts_text(no_zone))
    return errors


def setting_errors(host: str, settings: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Every problem of one host's settings (the role's podnet_* variables without the prefix), naming the host
    and the variable; [] when they are valid."""
    given = dict(settings or {})
    errors = ["host %s: podnet_%s is null; give it a value or remove it to take the default %r"
              % (host, k, DEFAULTS[k]) for k, v in given.items() if v is None and k in DEFAULTS]
    s = dict(DEFAULTS)
    s.update({k: v for k, v in given.items() if v is not None})
    for key in ("route_protocol", "bridge_mtu", "l2_bridge_check_timeout", "l2_bridge_rollback_timeout",
                "vxlan_vni", "vxlan_port"):
        s[key] = _number(s[key])
    for key in ("vxlan_direct_routing", "vxlan_tx_checksum_offload"):
        s[key] = _tristate(s[key])
    return errors + settings_errors(host, s)


def node_settings(host: str, settings: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The host's settings over the defaults; PlanError naming the host and the variable when one is not valid."""
    require_netaddr()
    errors = setting_errors(host, settings)
    if errors:
        raise PlanError(errors)
    s = dict(DEFAULTS)
    s.update({k: v for k, v in dict(settings or {}).items() if v is not None})
    for key in ("route_protocol", "bridge_mtu", "l2_bridge_check_timeout", "l2_bridge_rollback_timeout",
                "vxlan_vni", "vxlan_port"):
        s[key] = _number(s[key])
    for key in ("vxlan_direct_routing", "vxlan_tx_checksum_offload"):
        s[key] = _tristate(s[key])
    return s


def teardown_document(host: str, settings: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """What teardown needs to know about ``host`` without a plan: where its record is, and the names of what
    podnet.cluster makes there (its chains, route protocol, sysctl, CNI and unit files).

    The node's record (written by its last converge) says everything else; a node without a record is torn down
    from this alone: no pod subnets, no bridge addresses, and its bridge's link is kept (no record says
    podnet.cluster created it).
    """
    s = node_settings(host, settings)
    chains = [{"ip_version": family, "table": table, "chains": [{"name": chain, "rules": []}]}
              for family in (4, 6) for table, chain in (("filter", FORWARD_CHAIN), ("nat", MASQ_CHAIN))]
    cni = None
    if "cni" in s["runtimes"]:
        cni = {"file": "%s/%s" % (s["cni_conf_dir"].rstrip("/"), s["cni_conflist_name"]), "conflist": {},
               "mtu_from_bridge": False}
    return {
        "version": DOCUMENT_VERSION,
        "node": host,
        "fabric": s["fabric"],
        "pod_cidrs": [],
        "allow_readdress": bool(s["allow_readdress"]),
        "state_dir": s["state_dir"],
        "lib_dir": s["lib_dir"],
        "bridge": {"name": s["bridge"], "addresses": [], "mtu": None, "mtu_from_address": None},
        "owned_cidrs": [],
        "sysctl": {"file": s["sysctl_file"], "settings": {}, "conflicts": "ignore"},
        "iptables": chains,
        "routes": {"protocol": int(s["route_protocol"]), "table": "main", "routes": []},
        "docker": None,
        "cni": cni,
        "units": {"enabled": bool(s["units"]), "dir": s["systemd_dir"], "docker_dropin": "docker" in s["runtimes"]},
    }


def build_document(plan: Mapping[str, Any], host: str, settings: Optional[Mapping[str, Any]] = None,
                   routes_table: Optional[List[List[str]]] = None) -> Dict[str, Any]:
    """The node document of ``host``; PlanError naming the host and the variable when it cannot be built.

    A setting given as None (``podnet_bridge: null`` in the inventory) is an error, not the default: the
    role passes every setting, so None is what the inventory said.
    """
    s = node_settings(host, settings)
    nodes = plan.get("nodes") or {}
    if host not in nodes:
        raise PlanError(["host %s: not in the plan (podnet_plan.nodes); is it in the node group, and did "
                         "podnet.cluster.plan run in this play?" % host])
    entry = nodes[host]
    net = node_network(plan, host, nonmasquerade=s["nonmasquerade_cidrs"], masquerade=bool(s["masquerade"]),
                       route_protocol=s["route_protocol"], bridge=s["bridge"], fabric=s["fabric"],
                       fabric_cidrs=s["gce_network_cidrs"])
    runtime = runtime_config(plan, host, s["runtimes"], bridge=s["bridge"], mtu=None,
                             cni_network=s["cni_network_name"], cni_version=s["cni_version"], fabric=s["fabric"])
    routes: List[str] = []
    if s["fabric"] in PEER_ROUTE_FABRICS:
        table = routes_table if routes_table is not None else peer_routes(plan)
        routes = [route for node, route in table if node != host]
    docker = None
    if runtime["docker"]:
        docker = {"file": s["docker_config_file"], "set": runtime["docker"], "mtu_from_bridge": not s["bridge_mtu"],
                  "refuse": {k: v % s["bridge"] for k, v in DOCKER_REFUSE.items()}}
        if s["bridge_mtu"]:
            docker["set"]["mtu"] = int(s["bridge_mtu"])
    cni = None
    if runtime["cni"]:
        conflist = runtime["cni"]
        if s["bridge_mtu"]:
            conflist["plugins"][0]["mtu"] = int(s["bridge_mtu"])
        cni = {"file": "%s/%s" % (s["cni_conf_dir"].rstrip("/"), s["cni_conflist_name"]), "conflist": conflist,
               "mtu_from_bridge": not s["bridge_mtu"]}
    overlay = None
    iptables = net["iptables"]
    if s["fabric"] in OVERLAY_FABRICS:
        vx = overlay_config(plan, host, s["vxlan_vni"], s["vxlan_port"], s["vxlan_direct_routing"],
                            None if s["vxlan_tx_checksum_offload"] == "" else s["vxlan_tx_checksum_offload"])
        overlay, routes = vx["overlay"], vx["routes"]
        iptables = [dict(item, chains=list(item["chains"])) for item in iptables]
        for item in vx["iptables"]:
            same = [i for i in iptables if (i["ip_version"], i["table"]) == (item["ip_version"], item["table"])]
            if same:
                same[0]["chains"].extend(item["chains"])
            else:
                iptables.append(item)
    uplink = None
    if s["fabric"] in SHARED_SEGMENT_FABRICS:
        uplink = uplink_spec(host, entry, s)
    doc = {
        "version": DOCUMENT_VERSION,
        "node": host,
        "fabric": s["fabric"],
        "pod_cidrs": list(entry.get("pod_cidrs") or []),
        "state_dir": s["state_dir"],
        "lib_dir": s["lib_dir"],
        "bridge": {"name": s["bridge"], "addresses": net["bridge_addresses"],
                   "mtu": int(s["bridge_mtu"]) or None,
                   "mtu_from_address": (entry.get("node_ips") or [None])[0]},
        "owned_cidrs": net["owned_cidrs"],
        "sysctl": {"file": s["sysctl_file"], "settings": net["sysctl"], "conflicts": s["sysctl_conflicts"]},
        "iptables": iptables,
        "routes": {"protocol": int(s["route_protocol"]), "table": "main", "routes": routes},
        "docker": docker,
        "cni": cni,
        "units": {"enabled": bool(s["units"]), "dir": s["systemd_dir"], "docker_dropin": "docker" in s["runtimes"]},
    }
    if uplink is not None:
        doc["uplink"] = uplink
    if overlay is not None:
        doc["overlay"] = overlay
    return doc


def uplink_snapshot_path(state_dir: str, bridge: str) -> str:
    """Where the state of the uplink before its move into ``bridge`` is kept (the module's default there)."""
    return "%s/uplink-%s.json" % (state_dir.rstrip("/"), bridge)


def _truthy(value: Any) -> bool:
    """A boolean setting given as a boolean or as Ansible's words for one (-e gives strings)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on", "y", "t")
    return bool(value)


def uplink_spec(host: str, entry: Mapping[str, Any], s: Mapping[str, Any]) -> Dict[str, Any]:
    """The arguments of podnet.cluster.uplink_bridge for this node (fabric l2_bridge).

    The uplink is ``podnet_uplink``, or else whichever interface holds the node's first node IP (the bridge,
    once moved: the snapshot names the uplink then).
    """
    spec: Dict[str, Any] = {"bridge": s["bridge"], "snapshot_path": uplink_snapshot_path(s["state_dir"], s["bridge"]),
                            "check_address": [str(a) for a in s["l2_bridge_check_address"]],
                            "check_method": s["l2_bridge_check_method"],
                            "check_timeout": int(s["l2_bridge_check_timeout"]),
                            "rollback_timeout": int(s["l2_bridge_rollback_timeout"])}
    if _truthy(s["l2_bridge_allow_dynamic_address"]):
        spec["allow_dynamic_address"] = True
    if s["uplink"]:
        spec["uplink"] = s["uplink"]
    else:
        ips = list(entry.get("node_ips") or [])
        if not ips:
            raise PlanError(["host %s: podnet_fabric l2_bridge moves the interface holding the node IP into %s, "
                             "but the plan has no node IP for it; set podnet_node_ip or podnet_uplink"
                             % (host, s["bridge"])])
        spec["uplink_address"] = str(ips[0]).split("/", maxsplit=1)[0]
    return spec
