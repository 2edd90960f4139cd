"""VirtualService delegation: a root rule's `delegate` is replaced by the delegate's rules.

As Istio: the delegate is a VirtualService with no `hosts`, named by name and namespace
(default: the root's); one level only; each delegate rule's matches are ANDed with the
root rule's matches (a pair that cannot both hold is dropped); destinations of delegate
rules resolve in the delegate's namespace; its rule names are prefixed by the root's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.visibility import exported_to

Lookup = Callable[[str, str], IstioObject | None]  # (namespace, name) -> VirtualService


@dataclass(frozen=True)
class Rule:
    """One HTTP rule as it applies: whose it is (for namespaces and reports) and where."""

    owner: IstioObject
    rule: vs_pb.HTTPRoute
    path: str


def expand(vs: IstioObject, lookup: Lookup, diag: Diagnostics) -> list[Rule]:
    spec = cast(vs_pb.VirtualService, vs.spec)
    out: list[Rule] = []
    for r, rule in enumerate(spec.http):
        path = f"spec.http[{r}]"
        if not rule.HasField("delegate"):
            out.append(Rule(vs, rule, path))
            continue
        if rule.route or rule.HasField("redirect") or rule.HasField("direct_response"):
            diag.error(
                vs,
                f"{path}.delegate",
                "delegate cannot be combined with route, redirect or directResponse: rule skipped",
            )
            continue
        namespace = rule.delegate.namespace or vs.meta.namespace
        target = lookup(namespace, rule.delegate.name)
        if target is None:
            diag.error(
                vs,
                f"{path}.delegate",
                f"no VirtualService {namespace}/{rule.delegate.name} to delegate to: rule skipped",
            )
            continue
        delegate = cast(vs_pb.VirtualService, target.spec)
        if not exported_to(delegate.export_to, namespace, vs.meta.namespace):
            diag.error(
                vs,
                f"{path}.delegate",
                f"VirtualService {namespace}/{rule.delegate.name} is not exported to namespace "
                f"{vs.meta.namespace} (its exportTo): rule skipped",
            )
            continue
        if delegate.hosts:
            diag.error(
                vs,
                f"{path}.delegate",
                f"VirtualService {namespace}/{rule.delegate.name} has hosts: only one "
                "without hosts can be a delegate: rule skipped",
            )
            continue
        for d, inner in enumerate(delegate.http):
            inner_path = f"spec.http[{d}]"
            if inner.HasField("delegate"):
                diag.error(
                    target,
                    f"{inner_path}.delegate",
                    "a delegate cannot delegate again (one level only, as in Istio): rule skipped",
                )
                continue
            merged = _merge_rule(rule, inner)
            if merged is None:
                diag.warning(
                    target,
                    f"{inner_path}.match",
                    f"no match can hold together with the root rule's "
                    f"({vs.meta.namespace}/{vs.meta.name} {path}): rule never applies",
                )
                continue
            out.append(Rule(target, merged, inner_path))
    return out


def _merge_rule(root: vs_pb.HTTPRoute, inner: vs_pb.HTTPRoute) -> vs_pb.HTTPRoute | None:
    merged = vs_pb.HTTPRoute()
    merged.CopyFrom(inner)
    if root.name:
        merged.name = f"{root.name}-{inner.name}" if inner.name else root.name
    if not root.match:
        return merged
    if not inner.match:
        matches = list(root.match)
    else:
        matches = [
            m for a in root.match for b in inner.match if (m := merge_match(a, b)) is not None
        ]
        if not matches:
            return None
    del merged.match[:]
    merged.match.extend(matches)
    return merged


def merge_match(
    root: vs_pb.HTTPMatchRequest, inner: vs_pb.HTTPMatchRequest
) -> vs_pb.HTTPMatchRequest | None:
    """Both matches at once, or None when no request can satisfy both."""
    out = vs_pb.HTTPMatchRequest()
    out.CopyFrom(inner)
    if root.name:
        out.name = f"{root.name}-{inner.name}" if inner.name else root.name
    if root.HasField("uri"):
        if not inner.HasField("uri"):
            out.uri.CopyFrom(root.uri)
        elif not _uri_within(root.uri, inner.uri):
            return None
    for field_name in ("scheme", "method", "authority"):
        if root.HasField(field_name):
            if not inner.HasField(field_name):
                getattr(out, field_name).CopyFrom(getattr(root, field_name))
            elif getattr(root, field_name) != getattr(inner, field_name):
                return None
    for map_name in ("headers", "without_headers", "query_params"):
        ours, theirs = getattr(root, map_name), getattr(out, map_name)
        for key in ours:
            if key in theirs and theirs[key] != ours[key]:
                return None
            theirs[key].CopyFrom(ours[key])
    for key, value in root.source_labels.items():
        if out.source_labels.get(key, value) != value:
            return None
        out.source_labels[key] = value
    if root.port:
        if out.port and out.port != root.port:
            return None
        out.port = root.port
    if root.source_namespace:
        if out.source_namespace and out.source_namespace != root.source_namespace:
            return None
        out.source_namespace = root.source_namespace
    if root.gateways and not out.gateways:
        out.gateways.extend(root.gateways)
    out.ignore_uri_case = root.ignore_uri_case or inner.ignore_uri_case
    return out


def _uri_within(root: vs_pb.StringMatch, inner: vs_pb.StringMatch) -> bool:
    """Istio's rule: the delegate's uri must narrow the root's, never widen or contradict it."""
    root_kind, inner_kind = root.WhichOneof("match_type"), inner.WhichOneof("match_type")
    if root_kind == "exact":
        return inner_kind == "exact" and inner.exact == root.exact
    if root_kind == "prefix":
        value = inner.exact if inner_kind == "exact" else inner.prefix
        return inner_kind in ("exact", "prefix") and value.startswith(root.prefix)
    return root == inner  # a regex can only be repeated
