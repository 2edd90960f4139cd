"""A DestinationRule traffic policy applied to one IR cluster (Istio's cluster builder).

loadBalancer -> lb_policy (consistentHash: RING_HASH or MAGLEV, the key goes on routes);
connectionPool -> circuit breaker thresholds, connect timeout, TCP keepalive, HTTP
protocol options; outlierDetection -> outlier_detection (+ panic threshold); tls -> an
UpstreamTlsContext. Problems are reported on the rule, at the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import cast

from google.protobuf.message import Message

from pilotfish.api.networking.v1alpha3 import destination_rule_pb2 as dr_pb
from pilotfish.model.objects import IstioObject
from pilotfish.translator import ir
from pilotfish.translator.diagnostics import Diagnostics, source_of
from pilotfish.translator.durations import duration_ms
from pilotfish.translator.secrets import Credentials, Unusable
from pilotfish.translator.tls import san_match

_LB = dr_pb.LoadBalancerSettings
_SIMPLE = {
    _LB.ROUND_ROBIN: "ROUND_ROBIN",
    _LB.LEAST_REQUEST: "LEAST_REQUEST",
    _LB.LEAST_CONN: "LEAST_REQUEST",  # deprecated alias, as Istio maps it
    _LB.RANDOM: "RANDOM",
    _LB.UNSPECIFIED: "LEAST_REQUEST",
}
_TLS = dr_pb.ClientTLSSettings


@dataclass(frozen=True)
class Applied:
    cluster: ir.Cluster
    secrets: tuple[ir.SdsSecret, ...] = ()


# Which Envoy cluster fields each policy section becomes, for reporting a problem found
# in the built cluster (the pre-push check) at the section the user wrote.
_ENVOY_FIELDS = {
    "load_balancer": ("lb_policy", "ring_hash_lb_config", "maglev_lb_config", "type"),
    "connection_pool": (
        "connect_timeout",
        "circuit_breakers",
        "upstream_connection_options",
        "typed_extension_protocol_options",
    ),
    "outlier_detection": ("outlier_detection", "common_lb_config"),
    "tls": ("transport_socket",),
}


def apply_policy(
    cluster: ir.Cluster,
    policy: dr_pb.TrafficPolicy,
    rule: IstioObject,
    credentials: Credentials,
    diag: Diagnostics,
    paths: Mapping[str, str] | None = None,
) -> Applied:
    """``paths``: where each section of ``policy`` was written in ``rule`` (default: its
    top-level ``spec.trafficPolicy``), for problems and the cluster's sources."""
    where = {
        name: (paths or {}).get(name, f"spec.trafficPolicy.{_json(name)}") for name in _ENVOY_FIELDS
    }
    out = cluster
    if policy.HasField("load_balancer"):
        out = _load_balancer(out, policy.load_balancer, rule, where["load_balancer"], diag)
    if policy.HasField("connection_pool"):
        out = _connection_pool(out, policy.connection_pool, rule, where["connection_pool"], diag)
    if policy.HasField("outlier_detection"):
        out = _outlier(out, policy.outlier_detection, rule, where["outlier_detection"], diag)
    secrets: tuple[ir.SdsSecret, ...] = ()
    if policy.HasField("tls"):
        out, secrets = _tls(out, policy.tls, rule, credentials, diag)
    sources = tuple(
        (envoy_field, source_of(rule, where[name]))
        for name, envoy_fields in _ENVOY_FIELDS.items()
        if policy.HasField(name)
        for envoy_field in envoy_fields
    )
    return Applied(replace(out, sources=(*out.sources, *sources)), secrets)


def apply_connection_pool(
    cluster: ir.Cluster,
    pool: dr_pb.ConnectionPoolSettings,
    obj: IstioObject,
    path: str,
    diag: Diagnostics,
) -> ir.Cluster:
    """A connectionPool alone (a sidecar's inbound cluster: a DestinationRule's, or a
    Sidecar's `ingress[].connectionPool` / `inboundConnectionPool`) at `path` in `obj`."""
    out = _connection_pool(cluster, pool, obj, path, diag)
    sources = tuple((f, source_of(obj, path)) for f in _ENVOY_FIELDS["connection_pool"])
    return replace(out, sources=(*out.sources, *sources))


def _load_balancer(
    cluster: ir.Cluster,
    lb: dr_pb.LoadBalancerSettings,
    rule: IstioObject,
    path: str,
    diag: Diagnostics,
) -> ir.Cluster:
    if cluster.discovery == "ORIGINAL_DST":
        return cluster  # to the client's own destination: nothing to balance (as Istio)
    which = lb.WhichOneof("lb_policy")
    if which == "consistent_hash" and lb.consistent_hash.HasField("http_cookie"):
        # Only reported here: the ttl goes on routes (destination_rules.hash_policy).
        cookie = lb.consistent_hash.http_cookie
        duration_ms(cookie, "ttl", rule, f"{path}.consistentHash.httpCookie.ttl", diag)
    if which == "simple":
        if lb.simple == _LB.PASSTHROUGH:
            # Istio: to the address the client asked for, i.e. an ORIGINAL_DST cluster.
            return replace(cluster, discovery="ORIGINAL_DST", lb_policy="CLUSTER_PROVIDED")
        return replace(cluster, lb_policy=_SIMPLE[lb.simple])
    if which == "consistent_hash":
        ch = lb.consistent_hash
        if ch.HasField("maglev"):
            return replace(
                cluster, lb_policy="MAGLEV", maglev_table_size=ch.maglev.table_size or None
            )
        size = ch.ring_hash.minimum_ring_size if ch.HasField("ring_hash") else 0
        return replace(
            cluster, lb_policy="RING_HASH", ring_size=size or ch.minimum_ring_size or None
        )
    return cluster


def _connection_pool(
    cluster: ir.Cluster,
    pool: dr_pb.ConnectionPoolSettings,
    rule: IstioObject,
    path: str,
    diag: Diagnostics,
) -> ir.Cluster:
    limits = cluster.circuit_breakers
    out = cluster
    if pool.HasField("tcp"):
        tcp = pool.tcp
        if tcp.max_connections > 0:
            limits = replace(limits, max_connections=tcp.max_connections)
        connect_timeout = duration_ms(
            tcp, "connect_timeout", rule, f"{path}.tcp.connectTimeout", diag, positive=True
        )
        if connect_timeout is not None:
            out = replace(out, connect_timeout_ms=connect_timeout)
        if tcp.HasField("tcp_keepalive"):
            ka = tcp.tcp_keepalive
            at = f"{path}.tcp.tcpKeepalive"
            time_ms = duration_ms(ka, "time", rule, f"{at}.time", diag)
            interval_ms = duration_ms(ka, "interval", rule, f"{at}.interval", diag)
            out = replace(
                out,
                tcp_keepalive=ir.TcpKeepalive(
                    probes=ka.probes or None,
                    time_s=None if time_ms is None else time_ms // 1000,
                    interval_s=None if interval_ms is None else interval_ms // 1000,
                ),
            )
    if pool.HasField("http"):
        http = pool.http
        if http.http1_max_pending_requests > 0:
            limits = replace(limits, max_pending_requests=http.http1_max_pending_requests)
        if http.http2_max_requests > 0:
            limits = replace(limits, max_requests=http.http2_max_requests)
        if http.max_retries > 0:
            limits = replace(limits, max_retries=http.max_retries)
        if http.max_requests_per_connection > 0:
            out = replace(out, max_requests_per_connection=http.max_requests_per_connection)
        idle_timeout = duration_ms(http, "idle_timeout", rule, f"{path}.http.idleTimeout", diag)
        if idle_timeout is not None:
            out = replace(out, idle_timeout_ms=idle_timeout)
        if http.h2_upgrade_policy == dr_pb.ConnectionPoolSettings.HTTPSettings.UPGRADE:
            out = replace(out, http2=True)
    return replace(out, circuit_breakers=limits)


def _outlier(
    cluster: ir.Cluster, od: dr_pb.OutlierDetection, rule: IstioObject, path: str, diag: Diagnostics
) -> ir.Cluster:
    consecutive_5xx = (
        od.consecutive_5xx_errors.value if od.HasField("consecutive_5xx_errors") else None
    )
    if consecutive_5xx is None and od.consecutive_errors > 0:
        consecutive_5xx = od.consecutive_errors  # the deprecated name, as Istio reads it
    return replace(
        cluster,
        outlier=ir.OutlierDetection(
            consecutive_5xx=consecutive_5xx,
            consecutive_gateway_errors=od.consecutive_gateway_errors.value
            if od.HasField("consecutive_gateway_errors")
            else None,
            interval_ms=duration_ms(od, "interval", rule, f"{path}.interval", diag, positive=True),
            base_ejection_time_ms=duration_ms(
                od, "base_ejection_time", rule, f"{path}.baseEjectionTime", diag, positive=True
            ),
            max_ejection_percent=od.max_ejection_percent or None,
        ),
        # Istio: minHealthPercent is the panic threshold (0 disables panic mode).
        healthy_panic_threshold=od.min_health_percent,
    )


def _tls(
    cluster: ir.Cluster,
    tls: dr_pb.ClientTLSSettings,
    rule: IstioObject,
    credentials: Credentials,
    diag: Diagnostics,
) -> tuple[ir.Cluster, tuple[ir.SdsSecret, ...]]:
    path = "spec.trafficPolicy.tls"  # also where subset/port-level policies point
    if tls.mode == _TLS.DISABLE:
        return replace(cluster, tls=None), ()
    if tls.mode == _TLS.ISTIO_MUTUAL:
        diag.error(
            rule,
            f"{path}.mode",
            "ISTIO_MUTUAL is not supported (it needs the mesh's own certificates): "
            "plaintext is used",
        )
        return replace(cluster, tls=None), ()
    sans = tuple(san_match(s) for s in tls.subject_alt_names)
    spec = ir.UpstreamTls(
        sni=tls.sni,
        subject_alt_names=sans,
        insecure_skip_verify=tls.insecure_skip_verify.value,
    )
    secrets: list[ir.SdsSecret] = []
    if tls.credential_name:
        if tls.mode == _TLS.MUTUAL:
            cert = credentials.certificate(tls.credential_name)
            if isinstance(cert, Unusable):
                diag.error(rule, f"{path}.credentialName", f"{cert.reason}: the cluster has no TLS")
                return cluster, ()  # the cluster stays, without TLS it would fail anyway
            secrets.append(cert)
            spec = replace(spec, certificate_secret=cert.name)
        ca = credentials.ca(tls.credential_name)
        if isinstance(ca, Unusable):
            if tls.mode == _TLS.MUTUAL:
                diag.error(
                    rule, f"{path}.credentialName", f"{ca.reason}: the upstream is not verified"
                )
        else:
            secrets.append(ca)
            spec = replace(spec, ca_secret=ca.name)
    else:
        if tls.mode == _TLS.MUTUAL and not (tls.client_certificate and tls.private_key):
            diag.error(
                rule,
                path,
                "MUTUAL needs clientCertificate and privateKey (or credentialName): "
                "the upstream gets no client certificate",
            )
        spec = replace(
            spec,
            certificate_file=tls.client_certificate if tls.mode == _TLS.MUTUAL else "",
            private_key_file=tls.private_key if tls.mode == _TLS.MUTUAL else "",
            ca_file=tls.ca_certificates,
        )
    if spec.subject_alt_names and not (spec.ca_secret or spec.ca_file or spec.insecure_skip_verify):
        # Envoy refuses the whole cluster: "SAN-based verification of peer certificates
        # without trusted CA is insecure and not allowed".
        diag.error(
            rule,
            f"{path}.subjectAltNames",
            "checking subjectAltNames needs a CA (caCertificates or credentialName): ignored",
        )
        spec = replace(spec, subject_alt_names=())
    return replace(cluster, tls=spec), tuple(secrets)


# Fields pilotfish parses but does not translate: said out loud, not silently dropped.
_UNSUPPORTED: dict[str, tuple[str, ...]] = {
    "": ("tunnel", "proxy_protocol", "retry_budget"),
    "load_balancer": (
        "locality_lb_setting",
        "zone_aware_lb_setting",
        "warmup",
        "warmup_duration_secs",
    ),
    "connection_pool.tcp": ("max_connection_duration", "idle_timeout"),
    "connection_pool.http": ("max_concurrent_streams", "use_client_protocol", "http2_keep_alive"),
    "outlier_detection": (
        "consecutive_local_origin_failures",
        "split_external_local_origin_errors",
        "outlier_detection_http_error_codes",
    ),
    "tls": ("ca_crl",),
}


def warn_unsupported(rule: IstioObject, diag: Diagnostics) -> None:
    spec = cast(dr_pb.DestinationRule, rule.spec)
    if spec.HasField("workload_selector"):
        diag.warning(
            rule, "spec.workloadSelector", "not supported yet: the rule applies to every proxy"
        )
    policies: list[tuple[str, Message]] = []
    if spec.HasField("traffic_policy"):
        policies.append(("spec.trafficPolicy", spec.traffic_policy))
        policies.extend(
            (f"spec.trafficPolicy.portLevelSettings[{i}]", p)
            for i, p in enumerate(spec.traffic_policy.port_level_settings)
        )
    for s, subset in enumerate(spec.subsets):
        if subset.HasField("traffic_policy"):
            base = f"spec.subsets[{s}].trafficPolicy"
            policies.append((base, subset.traffic_policy))
            policies.extend(
                (f"{base}.portLevelSettings[{i}]", p)
                for i, p in enumerate(subset.traffic_policy.port_level_settings)
            )
    for base, policy in policies:
        for where, names in _UNSUPPORTED.items():
            message: Message | None = policy
            for part in where.split(".") if where else ():
                if message is None or part not in message.DESCRIPTOR.fields_by_name:
                    message = None
                    break
                message = getattr(message, part) if message.HasField(part) else None
            if message is None:
                continue
            for name in names:
                field = message.DESCRIPTOR.fields_by_name.get(name)
                if field is None:
                    continue
                is_set = (
                    len(getattr(message, name)) > 0
                    if field.is_repeated
                    else message.HasField(name)
                    if field.message_type is not None
                    else bool(getattr(message, name))
                )
                if is_set:
                    path = ".".join(filter(None, (base, _json(where), _json(name))))
                    diag.warning(rule, path, "not supported yet: ignored")


def _json(path: str) -> str:
    def one(name: str) -> str:
        head, *rest = name.split("_")
        return head + "".join(p.title() for p in rest)

    return ".".join(one(p) for p in path.split(".")) if path else ""
