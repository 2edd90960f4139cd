"""Istio's exportTo: which namespaces' proxies see a config object or service."""

from __future__ import annotations

from collections.abc import Iterable

from pilotfish.model.objects import IstioObject


def exported_to(export_to: Iterable[str], own_namespace: str, namespace: str) -> bool:
    """Unset or `*` is everywhere, `.` the object's own namespace, `~` nowhere, else the
    namespaces named."""
    targets = list(export_to)
    if not targets or "*" in targets:
        return True
    if targets == ["~"]:
        return False
    return any((t == "." and namespace == own_namespace) or t == namespace for t in targets)


def visible_in(obj: IstioObject, namespace: str) -> bool:
    """Is a VirtualService, DestinationRule or ServiceEntry exported to `namespace`?"""
    return exported_to(getattr(obj.spec, "export_to", ()), obj.meta.namespace, namespace)
