"""VirtualService `http:` rules -> IR routes, for one gateway server (or the mesh).

Istio's semantics: each rule with N matches becomes N routes (OR), rules keep their
order (first match wins), a rule with no match is a catch-all and ends the list.
`port` and `gateways` in a match are decided here, for the proxy, not by Envoy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from pilotfish.api.durations import duration_problem, to_millis
from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.model.references import resolve_gateway_ref
from pilotfish.translator import http_actions, ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.delegation import Lookup, expand
from pilotfish.translator.destinations import destination_port
from pilotfish.translator.diagnostics import Diagnostics, source_of
from pilotfish.translator.durations import duration_ms
from pilotfish.translator.hosts import fqdn
from pilotfish.translator.regex import regex_error
from pilotfish.translator.registry import ServiceRegistry

# Istio's retry policy for a route whose VirtualService says nothing about retries (and
# the mesh config sets no defaultHttpRetryPolicy). Since Istio 1.24 it has no retriable
# status codes: a 503 from the upstream is not retried.
DEFAULT_RETRY = ir.RetryPolicy(
    attempts=2,
    retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
)

# HTTPRoute fields a later issue implements: said out loud rather than silently dropped.
_NOT_YET: tuple[str, ...] = ()

# Set on the VirtualServices made from Kubernetes Ingresses (as Istio marks them): their
# prefixes match whole path elements, as the Ingress API says.
ROUTE_SEMANTICS = "internal.istio.io/route-semantics"


def _no_delegates(namespace: str, name: str) -> IstioObject | None:
    return None


@dataclass(frozen=True)
class RouteContext:
    """Where the routes are generated: a gateway (`ns/name`) or `mesh`, on a server port,
    for a proxy (its labels and namespace decide `sourceLabels`/`sourceNamespace`)."""

    gateway: str
    port: int
    proxy_namespace: str = ""
    proxy_labels: Mapping[str, str] = field(default_factory=dict)
    delegates: Lookup = _no_delegates  # finds the VirtualServices `delegate` names


def build_http_routes(
    vs: IstioObject, ctx: RouteContext, registry: ServiceRegistry, diag: Diagnostics
) -> list[ir.Route]:
    routes: list[ir.Route] = []
    separated = vs.meta.annotations.get(ROUTE_SEMANTICS) == "ingress"
    for entry in expand(vs, ctx.delegates, diag):
        # A delegate's rules are reported on, and resolve hosts in, the delegate.
        owner, rule, path = entry.owner, entry.rule, entry.path
        for field_name in _NOT_YET:
            if _is_set(rule, field_name):
                diag.warning(
                    owner, f"{path}.{_json_name(field_name)}", "not supported yet: ignored"
                )
        matches = [(m, match) for m, match in enumerate(rule.match) if _applies(match, ctx, owner)]
        if rule.match and not matches:
            continue  # every match is for another gateway, port or source
        rule_route = _rule_route(owner, rule, path, ctx, registry, diag)
        if rule_route is None:
            continue
        if not rule.match:
            routes.append(rule_route)
            return routes  # a catch-all: whatever follows can never match
        for m, match in matches:
            route_match = _route_match(owner, match, f"{path}.match[{m}]", diag)
            if route_match is None:
                continue
            if separated:
                route_match = _separated(route_match)
            name = f"{rule.name}.{match.name}" if match.name else rule.name
            routes.append(replace(rule_route, name=name, match=route_match))
            if route_match.is_catch_all:
                return routes
    return routes


def _rule_route(
    vs: IstioObject,
    rule: vs_pb.HTTPRoute,
    path: str,
    ctx: RouteContext,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> ir.Route | None:
    """The route every match of the rule shares (the match itself is set per match)."""
    actions = [f for f in ("route", "redirect", "direct_response") if _is_set(rule, f)]
    if len(actions) > 1:
        named = " and ".join(_json_name(a) for a in actions)
        diag.error(vs, path, f"{named} cannot be combined: rule skipped")
        return None
    if not actions:
        diag.error(
            vs, f"{path}.route", "the rule has no route, redirect or directResponse: skipped"
        )
        return None
    headers = (
        http_actions.headers(rule.headers, vs, f"{path}.headers", diag)
        if rule.HasField("headers")
        else ir.Headers()
    )
    route = ir.Route(
        name=rule.name,
        match=ir.RouteMatch(ir.StringMatch("prefix", "/")),
        clusters=(),
        headers=headers,
        fault=http_actions.fault(rule, vs, path, diag) if rule.HasField("fault") else None,
        cors=http_actions.cors(rule, vs, path, diag) if rule.HasField("cors_policy") else None,
        source=source_of(vs, path),
    )
    if actions == ["redirect"]:
        redirect = http_actions.redirect(rule, vs, path, ctx.port, diag)
        return None if redirect is None else replace(route, redirect=redirect)
    if actions == ["direct_response"]:
        direct = http_actions.direct_response(rule, vs, path, diag)
        return None if direct is None else replace(route, direct_response=direct)
    clusters = _destinations(vs, rule, path, ctx.port, registry, diag)
    if not clusters:
        return None
    if len(clusters) == 1 and not clusters[0].headers.is_empty:
        # One destination: its header changes go on the route, as Istio does.
        headers = _merge_headers(headers, clusters[0].headers)
        clusters = (replace(clusters[0], headers=ir.Headers()),)
    return replace(
        route,
        clusters=clusters,
        headers=headers,
        timeout_ms=duration_ms(rule, "timeout", vs, f"{path}.timeout", diag) or 0,
        retry=_retry(rule, vs, path, registry.mesh.default_http_retry, diag),
        rewrite=http_actions.rewrite(rule, vs, path, diag) if rule.HasField("rewrite") else None,
        mirrors=http_actions.mirrors(rule, vs, path, ctx.port, registry, diag),
        hash_policy=registry.hash_policy(clusters),  # the DR's consistentHash, as Istio
    )


def _merge_headers(rule: ir.Headers, dest: ir.Headers) -> ir.Headers:
    def merge(a: ir.HeaderOperations, b: ir.HeaderOperations) -> ir.HeaderOperations:
        return ir.HeaderOperations(
            set=(*a.set, *b.set), add=(*a.add, *b.add), remove=(*a.remove, *b.remove)
        )

    return ir.Headers(
        merge(rule.request, dest.request),
        merge(rule.response, dest.response),
        authority=dest.authority or rule.authority,
    )


def _separated(match: ir.RouteMatch) -> ir.RouteMatch:
    """Ingress `pathType: Prefix`: whole path elements (Envoy's path_separated_prefix,
    which wants no trailing slash; `/` stays a plain prefix)."""
    if match.path.kind != "prefix" or match.path.value == "/":
        return match
    return replace(match, path=ir.StringMatch("separated_prefix", match.path.value.rstrip("/")))


def _applies(match: vs_pb.HTTPMatchRequest, ctx: RouteContext, vs: IstioObject) -> bool:
    if match.port and match.port != ctx.port:
        return False
    # sourceLabels/sourceNamespace select the proxy being configured (for a gateway: its
    # own pods), decided here as Istio does, not by Envoy.
    if any(ctx.proxy_labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    if match.source_namespace and match.source_namespace != ctx.proxy_namespace:
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
    vs: IstioObject,
    rule: vs_pb.HTTPRoute,
    path: str,
    server_port: int,
    registry: ServiceRegistry,
    diag: Diagnostics,
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
        chosen = destination_port(port, service, server_port)
        port = chosen.number
        if chosen.defaulted:
            diag.warning(
                vs,
                f"{dpath}.port",
                f"no port given and {chosen.defaulted}: the gateway server's port {port} is used",
            )
        if service is not None and service.port(port) is None:
            diag.warning(
                vs,
                f"{dpath}.port",
                f"service {host} has no port {port}: requests routed there get 503",
            )
        # An ExternalName Service is its target's alias: routed to the target's clusters.
        target = service.alias_of if service is not None and service.alias_of else host
        cluster = str(ClusterName.outbound(port, target, dest.destination.subset))
        headers = (
            http_actions.headers(dest.headers, vs, f"{path}.route[{d}].headers", diag)
            if dest.HasField("headers")
            else ir.Headers()
        )
        found.append(ir.WeightedCluster(cluster, dest.weight, headers))
    if len(found) > 1:
        if sum(c.weight for c in found) == 0:
            diag.error(
                vs, f"{path}.route", "several destinations need weights: traffic is split evenly"
            )
            return tuple(replace(c, weight=1) for c in found)
        return tuple(c for c in found if c.weight > 0)  # Envoy refuses zero-weight entries
    return tuple(found)


def default_retry(mesh_default: vs_pb.HTTPRetry | None) -> ir.RetryPolicy | None:
    """The retry policy of a route that says nothing about retries (a sidecar's default
    routes too): the mesh config's defaultHttpRetryPolicy, else Istio's default."""
    if mesh_default is None:
        return DEFAULT_RETRY
    return _retry_policy(mesh_default, _unreported)  # checked when the mesh config loaded


def _retry(
    rule: vs_pb.HTTPRoute,
    vs: IstioObject,
    path: str,
    mesh_default: vs_pb.HTTPRetry | None,
    diag: Diagnostics,
) -> ir.RetryPolicy | None:
    if not rule.HasField("retries"):
        return default_retry(mesh_default)

    def report(field_name: str, message: str) -> None:
        diag.error(vs, f"{path}.retries.{field_name}", message)

    return _retry_policy(rule.retries, report)


Report = Callable[[str, str], None]  # (field under `retries`, message)


def _unreported(field_name: str, message: str) -> None:
    pass


def _retry_policy(retries: vs_pb.HTTPRetry, report: Report) -> ir.RetryPolicy | None:
    if retries.attempts < 0:  # Envoy's num_retries is unsigned: it could not even be encoded
        report("attempts", "attempts cannot be negative: retries off")
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
    per_try = None
    if retries.HasField("per_try_timeout"):
        problem = duration_problem(retries.per_try_timeout)
        if problem is None:
            per_try = to_millis(retries.per_try_timeout)
        else:
            report("perTryTimeout", f"{problem}: ignored")  # as durations.duration_ms
    return ir.RetryPolicy(
        attempts=retries.attempts,
        retry_on=",".join(conditions) if conditions else DEFAULT_RETRY.retry_on,
        per_try_timeout_ms=per_try,
        retriable_status_codes=tuple(codes),
        retry_remote_localities=retries.retry_remote_localities.value,
    )


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
