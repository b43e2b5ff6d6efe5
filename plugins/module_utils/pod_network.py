# -*- coding: utf-8 -*-
# Copyright: podnet.cluster contributors
# SPDX-License-Identifier: Apache-2.0
"""The network of a probe pod (podnet.cluster.probe_pod): its CNI plugins called as the runtime would, or a veth
pair into the node's bridge, and its addresses. A part of module_utils.pod's Pod (PodNetwork)."""

from __future__ import annotations

import json
import os

from ansible_collections.podnet.cluster.plugins.module_utils.engine.runner import EngineError, ModuleRunner, spawn
from ansible_collections.podnet.cluster.plugins.module_utils.fileutil import read_text
from ansible_collections.podnet.cluster.plugins.module_utils.iproute import run_ip_json


class PodError(Exception):
    """A step failed; the message names the step and the reason."""


class PodNetwork(object):
    """The pod's network, for module_utils.pod.Pod (``params``, ``name``, ``actions``, ``warnings``, ``module``,
    ``run``, ``in_netns``, ``bin``)."""

    # -- CNI ----------------------------------------------------------------

    def cni_config(self):
        path = self.params["conflist"]
        text = read_text(path)
        if text is None:
            raise PodError("the CNI configuration list %s cannot be read" % path)
        try:
            conf = json.loads(text)
        except ValueError as exc:
            raise PodError("the CNI configuration list %s is not JSON: %s" % (path, exc))
        if not isinstance(conf, dict) or not isinstance(conf.get("plugins"), list) or not conf["plugins"]:
            raise PodError("%s is not a CNI configuration list (no 'plugins' list)" % path)
        for key in ("cniVersion", "name"):
            if not conf.get(key):
                raise PodError("the CNI configuration list %s has no %r" % (path, key))
        for index, plugin in enumerate(conf["plugins"]):
            if not isinstance(plugin, dict) or not plugin.get("type"):
                raise PodError("plugin #%d of %s has no 'type'" % (index, path))
        return conf

    def cni_bin_dirs(self):
        return [d for d in self.params["cni_bin_dirs"] if os.path.isdir(d)]

    def cni_plugin_path(self, plugin_type, dirs):
        for folder in dirs:
            path = os.path.join(folder, plugin_type)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise PodError("CNI plugin %r not found in %s" % (plugin_type, ", ".join(self.params["cni_bin_dirs"])))

    def cni_call(self, command, conf, index, netns, prev_result, dirs):
        plugin = dict(conf["plugins"][index])
        plugin["cniVersion"] = conf["cniVersion"]
        plugin["name"] = conf["name"]
        if prev_result is not None:
            plugin["prevResult"] = prev_result
        exe = self.cni_plugin_path(plugin["type"], dirs)
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=self.name, CNI_NETNS=netns,
                   CNI_IFNAME=self.params["ifname"], CNI_PATH=":".join(dirs))
        rc, out, stderr = spawn([exe], json.dumps(plugin), timeout=self.params["timeout"] * 6, env=env)
        out = out.strip()
        if rc != 0:
            detail = out or stderr.strip()
            try:
                err = json.loads(out)
                detail = "%s%s (code %s)" % (err.get("msg"), "; %s" % err["details"] if err.get("details") else "",
                                             err.get("code"))
            except (ValueError, AttributeError):
                pass
            raise PodError("CNI %s of plugin %r (%s) failed: %s" % (command, plugin["type"], exe, detail))
        self.actions.append("CNI %s %s" % (command, plugin["type"]))
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise PodError("CNI %s of plugin %r printed no JSON result: %s" % (command, plugin["type"], out[:500]))

    def cni_add(self, record):
        conf = record["cni"]["config"]
        dirs = self.cni_bin_dirs()
        prev = None
        for index in range(len(conf["plugins"])):
            result = self.cni_call("ADD", conf, index, record["netns"], prev, dirs)
            record["cni"]["added"].append(index)
            if result is not None:
                prev = result
            record["cni"]["result"] = prev
            self.save(record)

    def cni_del(self, record):
        cni = record.get("cni") or {}
        conf = cni.get("config")
        if not conf:
            return
        dirs = self.cni_bin_dirs()
        for index in reversed(cni.get("added") or []):
            try:
                self.cni_call("DEL", conf, index, record.get("netns") or "", cni.get("result"), dirs)
            except PodError as exc:
                self.warnings.append(str(exc))
        cni["added"] = []

    # -- veth ---------------------------------------------------------------

    def link_exists(self, name):
        rc, _out, _err = self.run([self.bin("ip"), "link", "show", "dev", name], check=False)
        return rc == 0

    def veth_add(self, record):
        bridge = self.params["bridge"]
        ip = self.bin("ip")
        try:
            links = run_ip_json(ModuleRunner(self.module), ["-details", "link", "show", "dev", bridge], numeric=False,
                                tolerate=True)
        except EngineError:
            links = []
        if not links:
            raise PodError("the bridge %s does not exist on this node" % bridge)
        link = links[0]
        if (link.get("linkinfo") or {}).get("info_kind") != "bridge":
            raise PodError("%s is not a bridge" % bridge)
        mtu = str(link.get("mtu") or 1500)
        host_if = record["veth"]["host_if"]
        pid = record["pid"]
        self.run([ip, "link", "add", host_if, "mtu", mtu, "type", "veth", "peer", "name",
                  self.params["ifname"], "mtu", mtu, "netns", str(pid)])
        self.actions.append("created veth %s (node) / %s (pod)" % (host_if, self.params["ifname"]))
        self.run([ip, "link", "set", "dev", host_if, "master", bridge, "up"])
        self.actions.append("attached %s to %s" % (host_if, bridge))
        ifname = self.params["ifname"]
        lines = ["link set dev lo up"]
        for address in record["veth"]["addresses"]:
            lines.append("address add %s dev %s%s" % (address, ifname, " nodad" if ":" in address else ""))
        lines.append("link set dev %s up" % ifname)
        for gateway in record["veth"]["gateways"]:
            lines.append("route add %s via %s dev %s" % ("::/0" if ":" in gateway else "0.0.0.0/0", gateway, ifname))
        self.in_netns(record["netns"], [ip, "-batch", "-"], data=("\n".join(lines) + "\n").encode("utf-8"))
        self.actions.append("configured %s in the pod: %s; default via %s" % (
            ifname, ", ".join(record["veth"]["addresses"]), ", ".join(record["veth"]["gateways"]) or "none"))

    def veth_del(self, host_if):
        if host_if and self.link_exists(host_if):
            self.run([self.bin("ip"), "link", "del", "dev", host_if], check=False)
            self.actions.append("deleted veth %s" % host_if)
            return True
        return False

    # -- addresses ------------------------------------------------------------

    def addresses(self, netns):
        try:
            links = run_ip_json(ModuleRunner(self.module), ["address", "show"], numeric=False, netns=netns)
        except EngineError as exc:
            raise PodError(exc.msg)
        result = []
        for link in links:
            for info in link.get("addr_info", []):
                if info.get("scope") == "global" and info.get("local"):
                    result.append("%s/%s" % (info["local"], info.get("prefixlen")))
        return result
