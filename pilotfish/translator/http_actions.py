"""What an HTTP rule does besides choosing clusters: VirtualService `headers`, `redirect`,
`directResponse`, `rewrite`, `fault`, `mirror(s)` and `corsPolicy` -> IR, as Istio.

Each function reads one field of one rule and reports what Envoy could not be given;
http_routes.py puts the pieces on the routes.
"""

from __future__ import annotations

from typing import cast

from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.cluster_names import ClusterName
from pilotfish.translator.destinations import destination_port
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.durations import duration_ms
from pilotfish.translator.hosts import fqdn
from pilotfish.translator.regex import regex_error
from pilotfish.translator.registry import ServiceRegistry

REDIRECT_CODES = (301, 302, 303, 307, 308)  # what Envoy's RedirectAction can answer

# gRPC status names (as Istio's `abort.grpcStatus` takes them) -> codes.
GRPC_STATUS = {
    name: code
    for code, name in enumerate(
        (
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        )
    )
}

# Envoy refuses a RouteConfiguration that changes these through headers_to_add/remove.
_RESTRICTED = ("host",)
_AUTHORITY = ("host", ":authority")

FULL = 1_000_000  # 100% in Envoy's FractionalPercent MILLION denominator


def per_million(percent: vs_pb.Percent | None) -> int:
    """Istio's percentages become MILLION fractions: 0.1% is 1,000 (not rounded to 0)."""
    if percent is None:
        return FULL
    return max(0, min(FULL, round(percent.value * 10_000)))


def headers(spec: vs_pb.Headers, vs: IstioObject, path: str, diag: Diagnostics) -> ir.Headers:
    authority = ""
    if spec.HasField("request"):
        for name, value in spec.request.set.items():
            if name.lower() in _AUTHORITY:
                authority = value

    def ops(o: vs_pb.Headers.HeaderOperations, where: str) -> ir.HeaderOperations:
        def ok(name: str) -> bool:
            if where == "request" and name in o.set and name.lower() in _AUTHORITY:
                return False  # the authority, above
            if name.startswith(":") or name.lower() in _RESTRICTED:
                diag.error(
                    vs,
                    f"{path}.{where}",
                    f"header {name} cannot be changed this way (Envoy refuses it; "
                    "`set` it, or use rewrite.authority, for the host): ignored",
                )
                return False
            return True

        return ir.HeaderOperations(
            set=tuple((k.lower(), o.set[k]) for k in sorted(o.set) if ok(k)),
            add=tuple((k.lower(), o.add[k]) for k in sorted(o.add) if ok(k)),
            remove=tuple(k.lower() for k in o.remove if ok(k)),
        )

    return ir.Headers(
        request=ops(spec.request, "request") if spec.HasField("request") else ir.HeaderOperations(),
        response=ops(spec.response, "response")
        if spec.HasField("response")
        else ir.HeaderOperations(),
        authority=authority,
    )


def redirect(
    rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, port: int, diag: Diagnostics
) -> ir.Redirect | None:
    spec = rule.redirect
    code = spec.redirect_code or 301
    if spec.uri and spec.prefix_rewrite:
        diag.error(
            vs,
            f"{path}.redirect",
            "uri and prefixRewrite cannot both be set (Envoy takes one): rule skipped",
        )
        return None
    if code not in REDIRECT_CODES:
        diag.error(
            vs,
            f"{path}.redirect.redirectCode",
            f"{code} is not a redirect Envoy can send (301, 302, 303, 307, 308): rule skipped",
        )
        return None
    redirect_port: int | None = None
    if spec.WhichOneof("redirect_port") == "port":
        redirect_port = spec.port
    elif spec.derive_port == vs_pb.HTTPRedirect.FROM_REQUEST_PORT:
        # Envoy cannot copy the request's port; routes are made per port, so that port is
        # known here (as Istio does).
        redirect_port = port
    return ir.Redirect(
        path=spec.uri,
        prefix=spec.prefix_rewrite,
        host=spec.authority,
        port=redirect_port,
        scheme=spec.scheme,
        code=cast(ir.RedirectCode, code),
    )


def direct_response(
    rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, diag: Diagnostics
) -> ir.DirectResponse | None:
    spec = rule.direct_response
    if not 200 <= spec.status <= 599:
        diag.error(
            vs,
            f"{path}.directResponse.status",
            f"{spec.status} is not an HTTP status (200-599): rule skipped",
        )
        return None
    kind = spec.body.WhichOneof("specifier") if spec.HasField("body") else None
    body: bytes | None = None
    if kind == "string":
        body = spec.body.string.encode()
    elif kind == "bytes":
        body = spec.body.bytes
    return ir.DirectResponse(spec.status, body)


def rewrite(
    rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, diag: Diagnostics
) -> ir.Rewrite | None:
    spec = rule.rewrite
    regex = spec.uri_regex_rewrite
    if spec.uri and spec.HasField("uri_regex_rewrite"):
        diag.error(
            vs, f"{path}.rewrite", "uri and uriRegexRewrite cannot both be set: rewrite ignored"
        )
        return None
    if spec.HasField("uri_regex_rewrite") and (problem := regex_error(regex.match)):
        diag.error(
            vs,
            f"{path}.rewrite.uriRegexRewrite.match",
            f"invalid regex (RE2 syntax): {problem}: rewrite ignored",
        )
        return None
    return ir.Rewrite(
        prefix=spec.uri or None,
        authority=spec.authority,
        regex=regex.match if spec.HasField("uri_regex_rewrite") else "",
        regex_substitution=regex.rewrite,
    )


def fault(rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, diag: Diagnostics) -> ir.Fault | None:
    spec = rule.fault
    out = ir.Fault()
    if spec.HasField("delay"):
        delay = spec.delay
        if delay.WhichOneof("http_delay_type") != "fixed_delay":
            diag.error(
                vs,
                f"{path}.fault.delay",
                "only fixedDelay is supported (as in Istio): delay ignored",
            )
        else:
            # Envoy's fixed_delay must be more than 0: a zero or negative one is dropped.
            millis = duration_ms(
                delay, "fixed_delay", vs, f"{path}.fault.delay.fixedDelay", diag, positive=True
            )
            share = (
                per_million(delay.percentage)
                if delay.HasField("percentage")
                else (delay.percent * 10_000 if delay.percent else FULL)
            )
            if millis is not None:
                out = ir.Fault(delay_ms=millis, delay_per_million=share)
    if spec.HasField("abort"):
        abort = spec.abort
        share = per_million(abort.percentage if abort.HasField("percentage") else None)
        kind = abort.WhichOneof("error_type")
        if kind == "http_status":
            if not 200 <= abort.http_status <= 599:
                diag.error(
                    vs,
                    f"{path}.fault.abort.httpStatus",
                    f"{abort.http_status} is not an HTTP status (200-599): abort ignored",
                )
            else:
                out = ir.Fault(
                    out.delay_ms,
                    out.delay_per_million,
                    abort_http_status=abort.http_status,
                    abort_per_million=share,
                )
        elif kind == "grpc_status":
            code = GRPC_STATUS.get(abort.grpc_status.upper())
            if code is None and abort.grpc_status.isdigit():
                code = int(abort.grpc_status)
            if code is None:
                diag.error(
                    vs,
                    f"{path}.fault.abort.grpcStatus",
                    f"unknown gRPC status {abort.grpc_status!r}: abort ignored",
                )
            else:
                out = ir.Fault(
                    out.delay_ms,
                    out.delay_per_million,
                    abort_grpc_status=code,
                    abort_per_million=share,
                )
        else:
            diag.error(
                vs,
                f"{path}.fault.abort",
                "an abort needs httpStatus or grpcStatus (http2Error is not supported, "
                "as in Istio): abort ignored",
            )
    if out.delay_ms is None and out.abort_http_status is None and out.abort_grpc_status is None:
        return None
    return out


def mirrors(
    rule: vs_pb.HTTPRoute,
    vs: IstioObject,
    path: str,
    server_port: int,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> tuple[ir.Mirror, ...]:
    found: list[ir.Mirror] = []
    if rule.HasField("mirror"):
        if rule.HasField("mirror_percentage"):
            share = per_million(rule.mirror_percentage)
        elif rule.HasField("mirror_percent"):
            share = min(100, rule.mirror_percent.value) * 10_000
        else:
            share = FULL
        cluster = _cluster(rule.mirror, vs, f"{path}.mirror", server_port, registry, diag)
        found.append(ir.Mirror(cluster, share))
    for i, policy in enumerate(rule.mirrors):
        where = f"{path}.mirrors[{i}].destination"
        cluster = _cluster(policy.destination, vs, where, server_port, registry, diag)
        share = per_million(policy.percentage if policy.HasField("percentage") else None)
        found.append(ir.Mirror(cluster, share))
    return tuple(found)


def _cluster(
    dest: vs_pb.Destination,
    vs: IstioObject,
    path: str,
    server_port: int,
    registry: ServiceRegistry,
    diag: Diagnostics,
) -> str:
    host = fqdn(dest.host, vs.meta.namespace)
    port = dest.port.number
    service = registry.lookup(host)
    if service is None:
        diag.warning(vs, f"{path}.host", f"no service {host} is known: nothing is mirrored")
    chosen = destination_port(port, service, server_port)
    if chosen.defaulted:
        diag.warning(
            vs,
            f"{path}.port",
            f"no port given and {chosen.defaulted}: the gateway server's port "
            f"{chosen.number} is used",
        )
    return str(ClusterName.outbound(chosen.number, host, dest.subset))


def cors(rule: vs_pb.HTTPRoute, vs: IstioObject, path: str, diag: Diagnostics) -> ir.Cors:
    spec = rule.cors_policy
    origins = [ir.StringMatch("exact", o) for o in spec.allow_origin]  # deprecated form
    for i, m in enumerate(spec.allow_origins):
        kind = m.WhichOneof("match_type")
        if kind is None:
            continue
        value = getattr(m, kind)
        if kind == "regex" and (problem := regex_error(value)):
            diag.error(
                vs,
                f"{path}.corsPolicy.allowOrigins[{i}].regex",
                f"invalid regex (RE2 syntax): {problem}: origin ignored",
            )
            continue
        origins.append(ir.StringMatch(cast(ir.StringMatchKind, kind), value))
    max_age_ms = duration_ms(spec, "max_age", vs, f"{path}.corsPolicy.maxAge", diag)
    max_age = None if max_age_ms is None else max_age_ms // 1000
    unmatched = spec.unmatched_preflights
    return ir.Cors(
        allow_origins=tuple(origins),
        allow_methods=tuple(spec.allow_methods),
        allow_headers=tuple(spec.allow_headers),
        expose_headers=tuple(spec.expose_headers),
        max_age_s=max_age,
        allow_credentials=spec.allow_credentials.value
        if spec.HasField("allow_credentials")
        else None,
        forward_unmatched_preflights=None
        if unmatched == vs_pb.CorsPolicy.UNSPECIFIED
        else unmatched == vs_pb.CorsPolicy.FORWARD,
    )
