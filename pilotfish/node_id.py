"""Istio's proxy node ID: ``<type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local``.

The control plane decides what a proxy is (gateway or sidecar, which namespace) from this
string, so a malformed one is refused with a message that shows the expected form rather
than silently producing an empty config.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

ProxyType: TypeAlias = Literal["router", "sidecar"]
PROXY_TYPES: tuple[ProxyType, ...] = ("router", "sidecar")

NODE_ID_FORM = "<type>~<ip>~<pod name>.<namespace>~<namespace>.svc.cluster.local"
NODE_ID_EXAMPLE = "router~10.0.0.1~gw-7d9.istio-system~istio-system.svc.cluster.local"

# Kubernetes names: a namespace is a DNS-1123 label; a pod name a DNS-1123 subdomain
# (so it may hold dots, which is why the namespace is split off at the *last* dot).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class NodeId:
    """The parts of a node ID. ``str(node_id)`` gives back the canonical string."""

    type: ProxyType
    ip: str
    pod_name: str
    namespace: str
    domain: str

    @classmethod
    def for_pod(cls, proxy_type: ProxyType, ip: str, pod_name: str, namespace: str) -> NodeId:
        """The node ID Istio's agent would give this pod (domain ``<ns>.svc.cluster.local``)."""
        return cls(proxy_type, ip, pod_name, namespace, f"{namespace}.svc.cluster.local")

    def __str__(self) -> str:
        return f"{self.type}~{self.ip}~{self.pod_name}.{self.namespace}~{self.domain}"


def parse_node_id(node_id: str) -> NodeId:
    """Parse and check a node ID; ``ValueError`` says what is wrong and the expected form."""

    def bad(problem: str) -> ValueError:
        return ValueError(
            f"invalid node ID {node_id!r}: {problem}; "
            f"the form is {NODE_ID_FORM} (e.g. {NODE_ID_EXAMPLE})"
        )

    parts = node_id.split("~")
    if len(parts) != 4:
        raise bad(f"expected 4 '~'-separated parts, got {len(parts)}")
    type_, ip, pod_ns, domain = parts
    if type_ not in PROXY_TYPES:
        raise bad(f"proxy type {type_!r} is not one of {', '.join(PROXY_TYPES)}")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise bad(f"{ip!r} is not an IP address") from None
    pod_name, dot, namespace = pod_ns.rpartition(".")
    if not dot or not pod_name or not namespace:
        raise bad(f"third part {pod_ns!r} must be <pod name>.<namespace>")
    if not _DNS_SUBDOMAIN.match(pod_name) or len(pod_name) > 253:
        raise bad(f"pod name {pod_name!r} is not a valid Kubernetes name")
    if not _DNS_LABEL.match(namespace) or len(namespace) > 63:
        raise bad(f"namespace {namespace!r} is not a valid Kubernetes namespace")
    if not domain or not _DNS_SUBDOMAIN.match(domain):
        raise bad(f"DNS domain {domain!r} is not a DNS name")
    return NodeId(type_, ip, pod_name, namespace, domain)
