"""VirtualService `http:` rules -> IR routes, for one gateway server (or the mesh).

Istio's semantics: each rule with N matches becomes N routes (OR), rules keep their
order (first match wins), a rule with no match is a catch-all and ends the list.
`port` and `gateways` in a match are decided here, for the proxy, not by Envoy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import resolve_gateway_ref
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.hosts import fqdn
from pilotfish.translator.regex import regex_error
from pilotfish.translator.registry import ServiceRegistry

# Istio's retry policy for a route whose VirtualService says nothing about retries.
DEFAULT_RETRY = ir.RetryPolicy(
    attempts=2,
    retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    retriable_status_codes=(503,),
)

# HTTPRoute fields a later issue implements: said out loud rather than silently dropped.
_NOT_YET = (
    "redirect",
    "direct_response",
    "delegate",
    "rewrite",
    "fault",
    "mirror",
    "mirrors",
    "cors_policy",
    "headers",
)


@dataclass(frozen=True)
class RouteContext:
    """Where the routes are generated: a gateway (`ns/name`) or `mesh`, on a server port."""

    gateway: str
    port: int


def build_http_routes(
    vs: IstioObject, ctx: RouteContext, registry: ServiceRegistry, diag: Diagnostics
) -> list[ir.Route]:
    spec = cast(vs_pb.VirtualService, vs.spec)
    routes: list[ir.Route] = []
    for r, rule in enumerate(spec.http):
        path = f"spec.http[{r}]"
        for field_name in _NOT_YET:
            if _is_set(rule, field_name):
                diag.warning(vs, f"{path}.{_json_name(field_name)}", "not supported yet: ignored")
        if not rule.route:
            diag.error(vs, f"{path}.route", "the rule has no route destinations: skipped")
            continue
        clusters = _destinations(vs, rule, path, registry, diag)
        if not clusters:
            continue
        matches = [(m, match) for m, match in enumerate(rule.match) if _applies(match, ctx, vs)]
        if rule.match and not matches:
            continue  # every match is for another gateway or port
        rule_route = ir.Route(
            name=rule.name,
            match=ir.RouteMatch(ir.StringMatch("prefix", "/")),
            clusters=clusters,
            timeout_ms=_duration_ms(rule, "timeout", vs, f"{path}.timeout", diag) or 0,
            retry=_retry(rule, vs, path, diag),
        )
        if not rule.match:
            routes.append(rule_route)
            return routes  # a catch-all: whatever follows can never match
        for m, match in matches:
            route_match = _route_match(vs, match, f"{path}.match[{m}]", diag)
            if route_match is None:
                continue
            name = f"{rule.name}.{match.name}" if match.name else rule.name
            routes.append(replace(rule_route, name=name, match=route_match))
            if route_match.is_catch_all:
                return routes
    return routes


def _applies(match: vs_pb.HTTPMatchRequest, ctx: RouteContext, vs: IstioObject) -> bool:
    if match.port and match.port != ctx.port:
        return False
    if match.gateways:
        wanted = {resolve_gateway_ref(g, vs.meta.namespace) for g in match.gateways}
        return ctx.gateway in wanted
    return True


def _route_match(
    vs: IstioObject, match: vs_pb.HTTPMatchRequest, path: str, diag: Diagnostics
) -> ir.RouteMatch | None:
    uri = _string_match(match.uri) if match.HasField("uri") else None
    if uri is None or uri.kind == "present":
        uri = ir.StringMatch("prefix", "/")
    headers: list[ir.HeaderMatch] = []
    for pseudo, field_name in (
        (":method", "method"),
        (":authority", "authority"),
        (":scheme", "scheme"),
    ):
        if match.HasField(field_name):
            headers.append(ir.HeaderMatch(pseudo, _string_match(getattr(match, field_name))))
    for name in sorted(match.headers):
        headers.append(ir.HeaderMatch(name.lower(), _header_value_match(match.headers[name])))
    for name in sorted(match.without_headers):
        headers.append(
            ir.HeaderMatch(name.lower(), _string_match(match.without_headers[name]), invert=True)
        )
    query = [
        ir.QueryMatch(name, _string_match(match.query_params[name]))
        for name in sorted(match.query_params)
    ]

    for where, value in [
        ("uri", uri),
        *((f"headers.{h.name}", h.match) for h in headers),
        *((f"queryParams.{q.name}", q.match) for q in query),
    ]:
        if value.kind == "regex" and (problem := regex_error(value.value)):
            diag.error(
                vs, f"{path}.{where}.regex", f"invalid regex (RE2 syntax): {problem}: match skipped"
            )
            return None
    return ir.RouteMatch(
        path=uri,
        case_sensitive=not match.ignore_uri_case,
        headers=tuple(headers),
        query=tuple(query),
    )


def _header_value_match(m: vs_pb.StringMatch) -> ir.StringMatch:
    """As Istio: a header `regex: "*"` (not a valid regex) means "present"."""
    if m.WhichOneof("match_type") == "regex" and m.regex == "*":
        return ir.StringMatch("present")
    return _string_match(m)


def _string_match(m: vs_pb.StringMatch) -> ir.StringMatch:
    kind = m.WhichOneof("match_type")
    if kind is None:
        return ir.StringMatch("present")
    return ir.StringMatch(cast(ir.StringMatchKind, kind), getattr(m, kind))


def _destinations(
    vs: IstioObject, rule: vs_pb.HTTPRoute, path: str, registry: ServiceRegistry, diag: Diagnostics
) -> tuple[ir.WeightedCluster, ...]:
    found = []
    for d, dest in enumerate(rule.route):
        dpath = f"{path}.route[{d}].destination"
        host = fqdn(dest.destination.host, vs.meta.namespace)
        port = dest.destination.port.number
        service = registry.lookup(host)
        if service is None:
            diag.warning(
                vs, f"{dpath}.host", f"no service {host} is known: requests routed there get 503"
            )
        if not port:
            if service is not None and len(service.ports) == 1:
                port = service.ports[0].port
            else:
                why = "it has several ports" if service else "the service is unknown"
                diag.error(vs, f"{dpath}.port", f"a port is required ({why}): destination skipped")
                continue
        elif service is not None and service.port(port) is None:
            diag.warning(
                vs,
                f"{dpath}.port",
                f"service {host} has no port {port}: requests routed there get 503",
            )
        cluster = f"outbound|{port}|{dest.destination.subset}|{host}"
        found.append(ir.WeightedCluster(cluster, dest.weight))
    if len(found) > 1:
        if sum(c.weight for c in found) == 0:
            diag.error(
                vs, f"{path}.route", "several destinations need weights: traffic is split evenly"
            )
            return tuple(ir.WeightedCluster(c.cluster, 1) for c in found)
        return tuple(c for c in found if c.weight > 0)  # Envoy refuses zero-weight entries
    return tuple(found)


def _retry(
    rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, diag: Diagnostics
) -> ir.RetryPolicy | None:
    if not rule.HasField("retries"):
        return DEFAULT_RETRY
    retries = rule.retries
    if retries.attempts < 0:  # Envoy's num_retries is unsigned: it could not even be encoded
        diag.error(vs, f"{path}.retries.attempts", "attempts cannot be negative: retries off")
        return None
    if retries.attempts == 0:
        return None  # `attempts: 0` turns retries off
    codes = []
    conditions = []
    for item in (s.strip() for s in retries.retry_on.split(",") if s.strip()):
        if item.isdigit():
            codes.append(int(item))
        else:
            conditions.append(item)
    if codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    return ir.RetryPolicy(
        attempts=retries.attempts,
        retry_on=",".join(conditions) if conditions else DEFAULT_RETRY.retry_on,
        per_try_timeout_ms=_duration_ms(
            retries, "per_try_timeout", vs, f"{path}.retries.perTryTimeout", diag
        ),
        retriable_status_codes=tuple(codes)
        if codes or conditions
        else DEFAULT_RETRY.retriable_status_codes,
        retry_remote_localities=retries.retry_remote_localities.value,
    )


def _millis(d: Duration) -> int:
    return d.seconds * 1000 + d.nanos // 1_000_000


def _duration_ms(
    message: Message, field_name: str, vs: IstioObject, path: str, diag: Diagnostics
) -> int | None:
    """A Duration field in whole milliseconds; None when unset, or when negative: Envoy
    would refuse the whole RouteConfiguration for it, so it is reported and ignored."""
    if not message.HasField(field_name):
        return None
    millis = _millis(getattr(message, field_name))
    if millis < 0:
        diag.error(vs, path, "a duration cannot be negative: ignored")
        return None
    return millis


def _is_set(message: vs_pb.HTTPRoute, field_name: str) -> bool:
    descriptor = message.DESCRIPTOR.fields_by_name.get(field_name)
    if descriptor is None:
        return False
    if descriptor.is_repeated:
        return len(getattr(message, field_name)) > 0
    return message.HasField(field_name)


def _json_name(field_name: str) -> str:
    head, *rest = field_name.split("_")
    return head + "".join(p.title() for p in rest)
