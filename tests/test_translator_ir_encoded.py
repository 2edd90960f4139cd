"""Every IR field reaches Envoy (DESIGN.md, "Avoid: IR fields that no builder encodes").

A sample ProxyConfig holds every IR dataclass at least once, several times where one
field hides another (a route redirects or answers directly; a fault aborts with an HTTP
or a gRPC status). For each field of each class, the occurrences in the sample are
changed one at a time (a bool flipped, a number or string changed, an optional filled, a
tuple grown or shrunk, another Literal value) and the config is encoded again by the
builders: some change must change the resources (or make the builder refuse the value).
A field no builder reads never does, whatever the sample holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any

import pytest

from pilotfish.translator import http_options, ir
from pilotfish.translator.cluster_names import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
)
from pilotfish.translator.envoy import cluster as cluster_builder
from pilotfish.translator.translate import encode

# Fields known to be read into the IR and dropped, each with the issue that fixes it.
KNOWN_UNENCODED: dict[tuple[str, str], str] = {}

Step = tuple[str, int | None]  # a field, and the index into it when it is a tuple
Path = tuple[Step, ...]

ORIGINAL_DST = ir.ListenerFilter("original_dst")
C1 = "outbound|9080|v1|reviews.default.svc.cluster.local"
C2 = "outbound|9080|v2|reviews.default.svc.cluster.local"
EXACT = ir.StringMatch("exact", "a")


def _routes() -> tuple[ir.Route, ...]:
    headers = ir.Headers(
        request=ir.HeaderOperations(set=(("x-a", "1"),), add=(("x-b", "2"),), remove=("x-c",)),
        response=ir.HeaderOperations(set=(("x-d", "3"),), add=(("x-e", "4"),), remove=("x-f",)),
        authority="a.example.com",
    )
    match = ir.RouteMatch(
        ir.StringMatch("prefix", "/api"),
        case_sensitive=True,
        headers=(
            ir.HeaderMatch("x-user", EXACT),
            ir.HeaderMatch("x-any", ir.StringMatch("present")),
        ),
        query=(ir.QueryMatch("q", ir.StringMatch("regex", "a.*")),),
    )
    split = (ir.WeightedCluster(C1, 70, headers), ir.WeightedCluster(C2, 30))
    return (
        ir.Route(
            "split",
            match,
            split,
            timeout_ms=1500,
            retry=ir.RetryPolicy(3, "5xx", 200, (503,), retry_remote_localities=True),
            source=ir.Source("VirtualService", "default", "reviews", "spec.http[0]", "vs.yaml", 0),
            hash_policy=ir.HashPolicy("cookie", "session", "/", 10_000),
            rewrite=ir.Rewrite(prefix="/v1", authority="b.example.com"),
            headers=headers,
            fault=ir.Fault(delay_ms=100, delay_per_million=1000, abort_http_status=503),
            mirrors=(ir.Mirror(C2, 500_000),),
            cors=ir.Cors(
                allow_origins=(EXACT,),
                allow_methods=("GET",),
                allow_headers=("x-a",),
                expose_headers=("x-b",),
                max_age_s=60,
                allow_credentials=True,
                forward_unmatched_preflights=False,
            ),
        ),
        ir.Route(
            "grpc-fault",
            ir.RouteMatch(ir.StringMatch("exact", "/x")),
            (ir.WeightedCluster(C1, 0),),
            rewrite=ir.Rewrite(regex="^/x", regex_substitution="/y"),
            fault=ir.Fault(abort_grpc_status=14, abort_per_million=10),
            hash_policy=ir.HashPolicy("header", "x-user"),
        ),
        ir.Route(
            "redirect-path",
            ir.RouteMatch(ir.StringMatch("regex", "/r.*"), case_sensitive=False),
            (),
            redirect=ir.Redirect(path="/new", host="c.example.com", port=8080, scheme="https"),
        ),
        ir.Route(
            "redirect-prefix",
            ir.RouteMatch(ir.StringMatch("separated_prefix", "/p")),
            (),
            redirect=ir.Redirect(prefix="/q", code=302),
        ),
        ir.Route(
            "direct",
            ir.RouteMatch(ir.StringMatch("prefix", "/")),
            (),
            direct_response=ir.DirectResponse(418, b"tea"),
        ),
    )


def _downstream_tls() -> ir.DownstreamTls:
    return ir.DownstreamTls(
        ("kubernetes://cred",),
        alpn=("h2", "http/1.1"),
        params=ir.TlsParams("TLSv1_2", "TLSv1_3", ("ECDHE-RSA-AES128-GCM-SHA256",)),
        client=ir.ClientValidation(
            "kubernetes://cred-cacert",
            required=True,
            subject_alt_names=(ir.SanMatch("DNS", "client.example.com"),),
            spki=("spki",),
            hashes=("hash",),
        ),
    )


def _listeners() -> tuple[ir.Listener, ...]:
    inbound_routes = ir.RouteConfig(
        "inbound|9080||",
        (
            ir.VirtualHost(
                "inbound|http|9080",
                ("*",),
                (
                    ir.Route(
                        "default",
                        ir.RouteMatch(ir.StringMatch("prefix", "/")),
                        (ir.WeightedCluster("inbound|9080||", 0),),
                    ),
                ),
            ),
        ),
        ignore_port_in_host_matching=False,
    )
    inbound_http = ir.HttpOptions(
        xff_num_trusted_hops=1,
        forward_client_cert="APPEND_FORWARD",
        client_cert_details=ir.ClientCertDetails(subject=True, chain=True, dns=True, uri=True),
        merge_slashes=True,
        stream_idle_timeout_ms=0,
    )
    return (
        ir.Listener(
            "0.0.0.0_443",
            "0.0.0.0",
            443,
            (
                ir.HttpFilterChain(
                    "https.443",
                    "https",
                    ir.ChainMatch(("a.example.com",)),
                    _downstream_tls(),
                    http_filters=("fault", "cors"),
                    options=http_options.GATEWAY_TLS,
                ),
                ir.TcpFilterChain(
                    "tcp",
                    (ir.WeightedCluster(C1, 60), ir.WeightedCluster(C2, 40)),
                    ir.ChainMatch(("b.example.com",)),
                    _downstream_tls(),
                    name="tcp",
                ),
            ),
            listener_filters=(ir.ListenerFilter("tls_inspector"),),
        ),
        ir.Listener(
            "virtualInbound",
            "0.0.0.0",
            15006,
            (
                ir.HttpFilterChain(
                    "",
                    "inbound_0.0.0.0_9080",
                    ir.ChainMatch(
                        destination_port=9080,
                        transport_protocol="raw_buffer",
                        application_protocols=("http/1.1", "h2c"),
                    ),
                    options=inbound_http,
                    route_config=inbound_routes,
                    name="0.0.0.0_9080",
                ),
                ir.TcpFilterChain(
                    "inbound|3306||",
                    (ir.WeightedCluster("inbound|3306||", 0),),
                    ir.ChainMatch(
                        destination_port=3306,
                        prefix_ranges=(ir.CidrRange("10.0.0.1", 32),),
                        transport_protocol="tls",
                    ),
                ),
            ),
            listener_filters=(
                ORIGINAL_DST,
                ir.ListenerFilter("tls_inspector", only_ports=(3306, 3307)),
                ir.ListenerFilter("http_inspector", except_ports=(3306,)),
            ),
            listener_filters_timeout_ms=100,
            continue_on_listener_filters_timeout=True,
            default_chain=ir.TcpFilterChain(
                INBOUND_PASSTHROUGH_CLUSTER, (ir.WeightedCluster(INBOUND_PASSTHROUGH_CLUSTER, 0),)
            ),
            traffic_direction="INBOUND",
        ),
        ir.Listener(
            "0.0.0.0_9080",
            "0.0.0.0",
            9080,
            (ir.HttpFilterChain("9080", "outbound_0.0.0.0_9080"),),
            bind_to_port=False,
            use_original_dst=True,
        ),
    )


def _clusters() -> tuple[ir.Cluster, ...]:
    return (
        ir.Cluster(
            C1,
            sources=(("connect_timeout", ir.Source("DestinationRule", "default", "reviews")),),
            connect_timeout_ms=2000,
            lb_policy="RING_HASH",
            http2=True,
            circuit_breakers=ir.CircuitBreakers(1, 2, 3, 4),
            max_requests_per_connection=10,
            idle_timeout_ms=3000,
            tcp_keepalive=ir.TcpKeepalive(3, 10, 5),
            outlier=ir.OutlierDetection(5, 4, 1000, 30_000, 50),
            healthy_panic_threshold=40,
            ring_size=1024,
            tls=ir.UpstreamTls(
                sni="reviews.example.com",
                certificate_secret="kubernetes://client",
                ca_secret="kubernetes://client-cacert",
                subject_alt_names=(ir.SanMatch("URI", "spiffe://a"),),
            ),
        ),
        ir.Cluster(
            C2,
            lb_policy="MAGLEV",
            maglev_table_size=65537,
            tls=ir.UpstreamTls(
                certificate_file="/c.pem", private_key_file="/k.pem", ca_file="/ca.pem"
            ),
        ),
        ir.Cluster(
            "outbound|80||example.com",
            discovery="STRICT_DNS",
            inline_endpoints=(ir.Endpoint("example.com", 80),),
            tls=ir.UpstreamTls(
                insecure_skip_verify=False, subject_alt_names=(ir.SanMatch("DNS", "x"),)
            ),
        ),
        ir.Cluster(
            "inbound|9080||",
            discovery="STATIC",
            inline_endpoints=(ir.Endpoint("127.0.0.1", 9080),),
            upstream_bind_address="127.0.0.6",
        ),
        ir.Cluster(
            "inbound|3306||",
            lb_policy="CLUSTER_PROVIDED",
            discovery="ORIGINAL_DST",
            cleanup_interval_ms=60_000,
        ),
        ir.Cluster(
            PASSTHROUGH_CLUSTER,
            lb_policy="CLUSTER_PROVIDED",
            discovery="ORIGINAL_DST",
            use_downstream_protocol=True,
            idle_timeout_ms=300_000,
        ),
        ir.Cluster(BLACKHOLE_CLUSTER, lb_policy="ROUND_ROBIN", discovery="STATIC"),
    )


def sample_config() -> ir.ProxyConfig:
    return ir.ProxyConfig(
        listeners=_listeners(),
        route_configs=(
            ir.RouteConfig(
                "https.443",
                (
                    ir.VirtualHost("a.example.com:443", ("a.example.com",), _routes()),
                    ir.VirtualHost("b.example.com:443", ("b.example.com",), (), require_tls=True),
                ),
            ),
            ir.RouteConfig("9080", ()),
        ),
        clusters=_clusters(),
        load_assignments=(
            ir.LoadAssignment(C1, (ir.Endpoint("10.0.0.1", 9080),)),
            ir.LoadAssignment(C2, ()),
        ),
        secrets=(
            ir.CertificateSecret("kubernetes://cred", b"cert", b"key"),
            ir.ValidationSecret("kubernetes://cred-cacert", b"ca", b"crl"),
        ),
    )


# -- the walk -------------------------------------------------------------------------------


def ir_classes() -> set[type]:
    return {
        cls
        for _, cls in inspect.getmembers(ir, inspect.isclass)
        if dataclasses.is_dataclass(cls) and cls.__module__ == ir.__name__
    }


def occurrences(obj: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every IR dataclass instance in the tree under `obj`, with the path to it."""
    if not dataclasses.is_dataclass(obj):
        return
    yield path, obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                yield from occurrences(item, (*path, (f.name, i)))
        else:
            yield from occurrences(value, (*path, (f.name, None)))


def replace_at(root: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    (name, index), rest = path[0], path[1:]
    value = getattr(root, name)
    if index is None:
        return dataclasses.replace(root, **{name: replace_at(value, rest, new)})
    items = list(value)
    items[index] = replace_at(items[index], rest, new)
    return dataclasses.replace(root, **{name: tuple(items)})


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, globalns=vars(ir))


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def sample(hint: Any) -> Any:
    """Some valid value of a type (required dataclass fields filled the same way)."""
    if hint is bool:
        return True
    if hint is int:
        return 1
    if hint is str:
        return "x"
    if hint is bytes:
        return b"x"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return args[0]
    union = _union_args(hint)
    if union is not None:
        return sample(next(a for a in union if a is not type(None)))
    if origin is tuple:
        return (sample(args[0]),) if args[-1] is Ellipsis else tuple(sample(a) for a in args)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        types_ = hints(hint)
        return hint(
            **{
                f.name: sample(types_[f.name])
                for f in dataclasses.fields(hint)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            }
        )
    raise AssertionError(f"no sample for {hint!r}: teach this test the new type")


def changes(hint: Any, value: Any) -> list[Any]:
    """Values other than `value` of the same type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return [a for a in args if a != value]
    if hint is bool:
        return [not value]
    if hint is int:
        return [value + 1]
    if hint is str:
        return [value + "x"]
    if hint is bytes:
        return [value + b"x"]
    union = _union_args(hint)
    if union is not None:
        if value is None:
            return [sample(a) for a in union if a is not type(None)]
        actual = next(a for a in union if _is_instance(value, a))
        return ([None] if type(None) in union else []) + changes(actual, value)
    if origin is tuple and args[-1] is Ellipsis:
        grown = [(*value, sample(args[0]))]
        if not value:
            return grown
        return [value[:-1], *grown, *[(*value[:-1], c) for c in changes(args[0], value[-1])]]
    if origin is tuple:
        return [(c, *value[1:]) for c in changes(args[0], value[0])]
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        types_ = hints(hint)
        out = []
        for f in dataclasses.fields(hint):
            for c in changes(types_[f.name], getattr(value, f.name)):
                with contextlib.suppress(ValueError, TypeError):  # combinations the IR refuses
                    out.append(dataclasses.replace(value, **{f.name: c}))
        return out
    raise AssertionError(f"cannot change a {hint!r}: teach this test the new type")


def _is_instance(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    return isinstance(value, origin or hint)


def encoded(config: ir.ProxyConfig) -> tuple[bytes, ...] | None:
    """The resources, serialised; None when a builder refused the config (so it read it)."""
    try:
        out = encode(config)
    except (ValueError, KeyError, TypeError):
        return None
    groups = (out.listeners, out.routes, out.clusters, out.endpoints, out.secrets)
    resources = tuple(m.SerializeToString(deterministic=True) for group in groups for m in group)
    # Where each part came from is not for Envoy: it goes into the translation's sources
    # (for the pre-push check's reports), which count as encoded too.
    return (*resources, repr(sorted(out.sources.items())).encode())


def field_is_encoded(
    root: ir.ProxyConfig, baseline: tuple[bytes, ...], cls: type, name: str
) -> bool:
    hint = hints(cls)[name]
    for path, found in occurrences(root):
        if type(found) is not cls:
            continue
        obj: Any = found
        for new_value in changes(hint, getattr(obj, name)):
            try:
                config = replace_at(root, path, dataclasses.replace(obj, **{name: new_value}))
            except (ValueError, TypeError):
                continue  # a combination the IR itself refuses
            if encoded(config) != baseline:
                return True
    return False


def test_the_sample_holds_every_ir_class() -> None:
    found = {type(obj) for _, obj in occurrences(sample_config())}
    missing = sorted(c.__name__ for c in ir_classes() - found)
    assert not missing, f"add these IR classes to the sample: {missing}"


def test_every_ir_field_changes_what_envoy_gets() -> None:
    root = sample_config()
    baseline = encoded(root)
    assert baseline is not None, "the sample itself must encode"
    unencoded = {
        (cls.__name__, f.name)
        for cls in ir_classes()
        for f in dataclasses.fields(cls)
        if not field_is_encoded(root, baseline, cls, f.name)
    }
    surprises = sorted(unencoded - KNOWN_UNENCODED.keys())
    assert not surprises, f"IR fields no builder encodes: {surprises}"
    fixed = sorted(KNOWN_UNENCODED.keys() - unencoded)
    assert not fixed, f"encoded now: remove them from KNOWN_UNENCODED: {fixed}"


def test_a_field_the_builders_ignore_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: make the cluster builder ignore connect_timeout_ms."""
    build = cluster_builder.cluster

    def forgetful(spec: ir.Cluster) -> Any:
        return build(dataclasses.replace(spec, connect_timeout_ms=10_000))

    root = sample_config()
    baseline = encoded(root)
    assert baseline is not None
    assert field_is_encoded(root, baseline, ir.Cluster, "connect_timeout_ms")
    monkeypatch.setattr(cluster_builder, "cluster", forgetful)
    baseline = encoded(root)
    assert baseline is not None
    assert not field_is_encoded(root, baseline, ir.Cluster, "connect_timeout_ms")
    assert field_is_encoded(root, baseline, ir.Cluster, "idle_timeout_ms")
