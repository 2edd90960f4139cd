"""References between objects, resolved the way Istio resolves them, and checked.

A dangling reference does not make the referring object invalid (it still applies where
its other references hold), so these come back as errors on that object's field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from pilotfish.api.networking.v1alpha3.virtual_service_pb2 import VirtualService
from pilotfish.model.errors import ConfigError

if TYPE_CHECKING:
    from pilotfish.model.configset import ConfigSet

MESH = "mesh"


def resolve_gateway_ref(ref: str, namespace: str) -> str:
    """A VirtualService's `gateways:` entry as `namespace/name` (or `mesh`).

    `name` and `./name` mean the VirtualService's own namespace; the legacy
    `name.namespace.svc.cluster.local` form is still accepted, as Istio does.
    """
    if ref == MESH:
        return MESH
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return f"{namespace if ns in ('', '.') else ns}/{name}"
    if "." in ref:
        name, ns, *_ = ref.split(".")
        return f"{ns}/{name}"
    return f"{namespace}/{ref}"


def gateway_refs(gateways: list[str], namespace: str) -> list[str]:
    """All gateways a VirtualService binds to; none listed means the mesh (sidecars)."""
    return [resolve_gateway_ref(g, namespace) for g in gateways] or [MESH]


def cross_reference_errors(config: ConfigSet) -> list[ConfigError]:
    known = {f"{g.meta.namespace}/{g.meta.name}" for g in config.istio("Gateway")}
    errors = []
    for vs in config.istio("VirtualService"):
        ns = vs.meta.namespace
        spec = cast(VirtualService, vs.spec)
        checks = [(f"spec.gateways[{i}]", g) for i, g in enumerate(spec.gateways)]
        rule_lists: list[tuple[str, Sequence[Any]]] = [
            ("http", spec.http),
            ("tls", spec.tls),
            ("tcp", spec.tcp),
        ]
        for kind, rules in rule_lists:
            for r, rule in enumerate(rules):
                for m, match in enumerate(rule.match):
                    checks += [
                        (f"spec.{kind}[{r}].match[{m}].gateways[{i}]", g)
                        for i, g in enumerate(match.gateways)
                    ]
        for path, ref in checks:
            resolved = resolve_gateway_ref(ref, ns)
            if resolved != MESH and resolved not in known:
                errors.append(
                    ConfigError(
                        f"gateway {resolved!r} does not exist",
                        vs.origin.file,
                        vs.origin.document,
                        "VirtualService",
                        ns,
                        vs.meta.name,
                        path,
                    )
                )
    return errors
