"""Pods without Kubernetes, for sidecar tests: see world.py for what a pod is here."""

from testsupport.mesh.capture import (
    EXCLUDED_INBOUND_PORTS,
    INBOUND_CAPTURE_PORT,
    OUTBOUND_CAPTURE_PORT,
    PROXY_GID,
    PROXY_UID,
)
from testsupport.mesh.pod import PROBE, REPO_ROOT, MeshError, Pod
from testsupport.mesh.sweep import sweep_leftovers
from testsupport.mesh.world import MeshWorld, Service, ServicePort

__all__ = [
    "EXCLUDED_INBOUND_PORTS",
    "INBOUND_CAPTURE_PORT",
    "OUTBOUND_CAPTURE_PORT",
    "PROBE",
    "PROXY_GID",
    "PROXY_UID",
    "REPO_ROOT",
    "MeshError",
    "MeshWorld",
    "Pod",
    "Service",
    "ServicePort",
    "sweep_leftovers",
]
