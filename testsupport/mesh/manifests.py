"""The mesh world as Kubernetes objects: what pilotfish's file source reads as the registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testsupport.mesh.pod import Pod
    from testsupport.mesh.world import Service


def service(svc: Service) -> dict[str, Any]:
    ports = []
    for p in svc.ports:
        port: dict[str, Any] = {
            "name": p.name,
            "port": p.port,
            "targetPort": p.target,
            "protocol": p.protocol,
        }
        if p.app_protocol:
            port["appProtocol"] = p.app_protocol
        ports.append(port)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": svc.name,
            "namespace": svc.namespace,
            "labels": {"app": svc.name, "service": svc.name},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": svc.cluster_ip or "None",
            "clusterIPs": [svc.cluster_ip or "None"],
            "selector": dict(svc.selector),
            "ports": ports,
        },
    }


def endpoint_slice(svc: Service, pods: Sequence[Pod]) -> dict[str, Any]:
    """The EndpointSlice the endpoints controller would write: one endpoint per pod."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{svc.name}-mesh",
            "namespace": svc.namespace,
            "labels": {"kubernetes.io/service-name": svc.name},
        },
        "addressType": "IPv4",
        "ports": [{"name": p.name, "port": p.target, "protocol": p.protocol} for p in svc.ports],
        "endpoints": [
            {
                "addresses": [pod.ip],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace},
            }
            for pod in pods
        ],
    }


def pod(p: Pod) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
        "status": {"podIP": p.ip, "podIPs": [{"ip": p.ip}]},
    }
