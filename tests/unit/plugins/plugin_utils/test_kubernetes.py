# SPDX-License-Identifier: Apache-2.0
"""The Kubernetes settings that must agree with the plan (plugins/plugin_utils/kubernetes.py): the values, and the
generated kubeadm and kube-proxy documents and controller-manager flags checked against the published reference
pages (excerpts in tests/data/kubernetes, parsed by tests/lib/k8s_schema.py)."""

from __future__ import annotations

import pytest
import yaml

from ansible_collections.podnet.cluster.plugins.plugin_utils.kubernetes import (
    KUBE_PROXY_API_VERSION,
    KUBEADM_API_VERSION,
    KubernetesSettingsError,
    from_plan,
    settings,
)
from lib import k8s_schema

TYPES = k8s_schema.load_types("kubeadm-config.v1beta4.excerpt.md", "kube-proxy-config.v1alpha1.excerpt.md")
FLAGS = k8s_schema.parse_flags((k8s_schema.DATA / "kube-controller-manager.excerpt.md").read_text(encoding="utf-8"))

CASES = [
    # single-stack IPv4, default-like, no service network
    (["10.244.0.0/16"], {4: 24}, "l2_routes", []),
    # other CIDRs and prefixes, a service network, Compute Engine
    (["10.60.0.0/20"], {4: 26}, "gce", ["10.96.0.0/16"]),
    # dual-stack, IPv4 first
    (["10.70.0.0/18", "fd00:70::/56"], {4: 25, 6: 64}, "router", ["10.71.0.0/20", "fd00:71::/112"]),
    # IPv6 only, the service network given IPv6
    (["fd00:80::/48"], {6: 64}, "vxlan", ["fd00:81::/108"]),
]


def docs_of(s):
    return list(yaml.safe_load_all(s.kubeadm_yaml()))


@pytest.mark.parametrize("cluster,prefixes,fabric,services", CASES)
def test_the_documents_carry_the_plan(cluster, prefixes, fabric, services):
    s = settings(cluster, prefixes, fabric, services)
    cc, kp = docs_of(s)
    assert cc["apiVersion"] == KUBEADM_API_VERSION and cc["kind"] == "ClusterConfiguration"
    assert cc["networking"]["podSubnet"] == ",".join(cluster)
    assert cc["networking"].get("serviceSubnet") == (",".join(services) if services else None)
    args = {a["name"]: a["value"] for a in cc["controllerManager"]["extraArgs"]}
    assert args["allocate-node-cidrs"] == "false" and args["configure-cloud-routes"] == "false"
    for family, prefix in prefixes.items():
        assert args["node-cidr-mask-size-ipv%d" % family] == str(prefix)
    assert len(args) == 2 + len(prefixes)
    assert kp == {"apiVersion": KUBE_PROXY_API_VERSION, "kind": "KubeProxyConfiguration",
                  "clusterCIDR": ",".join(cluster), "detectLocalMode": "ClusterCIDR"}
    flags = s.flags_text().splitlines()
    assert flags[:3] == ["--allocate-node-cidrs=false", "--configure-cloud-routes=false",
                         "--cluster-cidr=%s" % ",".join(cluster)]
    assert ("--service-cluster-ip-range=%s" % ",".join(services) in flags) == bool(services)


@pytest.mark.parametrize("cluster,prefixes,fabric,services", CASES)
def test_the_documents_agree_with_the_published_schemas(cluster, prefixes, fabric, services):
    cc, kp = docs_of(settings(cluster, prefixes, fabric, services))
    assert k8s_schema.check(cc, "ClusterConfiguration", TYPES) == []
    assert k8s_schema.check(kp, "KubeProxyConfiguration", TYPES) == []
    # every value is a string in YAML too: "false", "24", not a YAML boolean or number
    for arg in cc["controllerManager"]["extraArgs"]:
        assert isinstance(arg["value"], str) and set(arg) == {"name", "value"}


@pytest.mark.parametrize("cluster,prefixes,fabric,services", CASES)
def test_the_flags_exist_on_the_controller_manager_page_with_their_types(cluster, prefixes, fabric, services):
    s = settings(cluster, prefixes, fabric, services)
    assert k8s_schema.check_flags(s.controller_manager_flags(), FLAGS) == []
    # the kubeadm extraArgs are controller-manager flags too
    cc = s.cluster_configuration()
    assert k8s_schema.check_flags(["--%s=%s" % (a["name"], a["value"]) for a in cc["controllerManager"]["extraArgs"]],
                                  FLAGS) == []


def test_the_schemas_were_read_from_the_excerpts():
    assert TYPES["Networking"]["podSubnet"].type == "string"
    assert TYPES["ControlPlaneComponent"]["extraArgs"].type == "[]Arg"
    assert TYPES["KubeProxyConfiguration"]["kind"].const == "KubeProxyConfiguration"
    assert TYPES["ClusterConfiguration"]["apiVersion"].const == KUBEADM_API_VERSION
    assert TYPES["LocalMode"] == "string"
    assert FLAGS["allocate-node-cidrs"] == "bool" and FLAGS["node-cidr-mask-size-ipv6"] == "int32"


# The checker reports what is wrong: a test that could not fail proves nothing.
@pytest.mark.parametrize("mutate,words", [
    (lambda cc, kp: cc["networking"].update(podSubnets=cc["networking"].pop("podSubnet")), "no field 'podSubnets'"),
    (lambda cc, kp: cc["networking"].update(podSubnet=["10.0.0.0/16"]), "networking.podSubnet: ['10.0.0.0/16'] is a list"),
    (lambda cc, kp: cc["controllerManager"].update(extraArgs={"allocate-node-cidrs": "false"}),
     "is a dict, the schema says []Arg"),
    (lambda cc, kp: cc["controllerManager"]["extraArgs"][0].update(value=False), "extraArgs[0].value: False is a bool"),
    (lambda cc, kp: cc["controllerManager"]["extraArgs"][0].update(key="x"), "no field 'key' in Arg"),
    (lambda cc, kp: cc.update(apiVersion="kubeadm.k8s.io/v1beta3"), "the schema says 'kubeadm.k8s.io/v1beta4'"),
    (lambda cc, kp: kp.update(kind="KubeProxyConfig"), "the schema says 'KubeProxyConfiguration'"),
    (lambda cc, kp: kp.update(clusterCidr=kp.pop("clusterCIDR")), "no field 'clusterCidr'"),
    (lambda cc, kp: kp.update(detectLocalMode=1), "detectLocalMode: 1 is a int"),
])
def test_the_checker_reports_a_wrong_document(mutate, words):
    cc, kp = docs_of(settings(["10.70.0.0/18", "fd00:70::/56"], {4: 25, 6: 64}, "gce", ["10.71.0.0/20"]))
    mutate(cc, kp)
    problems = k8s_schema.check(cc, "ClusterConfiguration", TYPES) + k8s_schema.check(kp, "KubeProxyConfiguration",
                                                                                      TYPES)
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("flag,words", [
    ("--allocate-node-cidr=false", "no such flag"),
    ("--allocate-node-cidrs=no", "takes true or false"),
    ("--node-cidr-mask-size-ipv4=/24", "takes an int32"),
    ("--cluster-cidr", "not --name=value"),
])
def test_the_flag_checker_reports_a_wrong_flag(flag, words):
    problems = k8s_schema.check_flags([flag], FLAGS)
    assert len(problems) == 1 and words in problems[0], problems


def test_the_text_names_each_setting_and_why():
    s = settings(["10.60.0.0/20", "fd00:60::/60"], {4: 26, 6: 64}, "gce", ["10.96.0.0/16"])
    text = s.text(written_to="/tmp/report")
    assert "networking.podSubnet: 10.60.0.0/20,fd00:60::/60" in text
    assert "networking.serviceSubnet: 10.96.0.0/16" in text
    assert "clusterCIDR: 10.60.0.0/20,fd00:60::/60" in text
    assert "allocate-node-cidrs=false:" in text and "configure-cloud-routes=false:" in text
    assert "beside the gce fabric's routes" in text
    assert "Written to /tmp/report: kubeadm-networking.yaml, kube-controller-manager.flags" in text
    # an IPv6-only service network missing in a dual-stack cluster is said
    assert "no IPv6 network" in text
    plain = settings(["10.244.0.0/16"], {4: 24}, "l2_routes").text()
    assert "serviceSubnet: not known (podnet_service_cidrs is empty)" in plain and "Written to" not in plain


def test_from_plan_reads_the_registered_plan():
    plan = {"cluster_cidrs": ["10.9.0.0/22", "fd00:9::/120"], "node_prefix_ipv4": 26, "node_prefix_ipv6": 124,
            "service_cidrs": ["10.10.0.0/24"], "nodes": {}}
    s = from_plan(plan, "l2_bridge")
    assert s.pod_subnet == "10.9.0.0/22,fd00:9::/120" and s.node_prefixes == {4: 26, 6: 124}
    assert s.service_subnet == "10.10.0.0/24" and s.fabric == "l2_bridge"


def test_what_kubernetes_would_refuse_is_a_note():
    wide = settings(["fd00:90::/32"], {6: 64}, "l2_routes", ["10.0.0.0/8"])
    assert any("32 bits shorter than the node prefix /64" in n for n in wide.notes)
    assert any("10.0.0.0/8 has 24 host bits" in n for n in wide.notes)
    two = settings(["10.244.0.0/16"], {4: 24}, "l2_routes", ["10.96.0.0/16", "10.97.0.0/16"])
    assert two.service_subnet is None and any("one network per family" in n for n in two.notes)


@pytest.mark.parametrize("cluster,prefixes,words", [
    ([], {4: 24}, "podnet_cluster_cidrs: empty"),
    (["10.0.0.0/16", "10.1.0.0/16"], {4: 24}, "one network per family"),
    (["10.0.0.1/16"], {4: 24}, "podnet_cluster_cidrs[0]: '10.0.0.1/16' is not a network"),
    (["10.0.0.0/16"], {4: 16}, "podnet_node_prefix_ipv4: /16 does not fit the cluster network 10.0.0.0/16"),
    (["fd00::/48"], {4: 24}, "podnet_node_prefix_ipv6: None is not a prefix length"),
])
def test_values_no_plan_has_are_errors_naming_the_variable(cluster, prefixes, words):
    with pytest.raises(KubernetesSettingsError) as err:
        settings(cluster, prefixes, "l2_routes")
    assert words in str(err.value)
