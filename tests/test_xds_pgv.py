"""The protoc-gen-validate checker (pilotfish/xds/pgv.py).

Each rejected case is also handed to a real ``envoy --mode validate``: the checker must
flag exactly what Envoy refuses, and the unbroken baseline must pass both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import re2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc_pb
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.protobuf.message import Message
from validate import validate_pb2

from pilotfish.xds import pgv
from testsupport.envoy import EnvoyConfigError, validate_config
from testsupport.static_bootstrap import static_bootstrap_for


def _cluster() -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name="outbound|80||a.example.com", type=cluster_pb2.Cluster.STATIC
    )
    cluster.connect_timeout.FromMilliseconds(1000)
    cluster.load_assignment.cluster_name = cluster.name
    return cluster


def _route_config() -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name="http.8080")
    vhost = config.virtual_hosts.add(name="a.example.com:80", domains=["a.example.com"])
    route = vhost.routes.add(name="r")
    route.match.prefix = "/"
    route.route.cluster = "outbound|80||a.example.com"
    route.route.timeout.FromMilliseconds(0)
    return config


def _listener(manager: hcm_pb2.HttpConnectionManager | None = None) -> listener_pb2.Listener:
    if manager is None:
        manager = hcm_pb2.HttpConnectionManager(stat_prefix="outbound_0.0.0.0_8080")
        manager.route_config.CopyFrom(_route_config())
        manager.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(
            router_pb2.Router()
        )
    listener = listener_pb2.Listener(name="0.0.0.0_8080")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = 0
    listener.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(manager)
    return listener


@dataclass(frozen=True)
class Case:
    """A resource Envoy rejects: ``break_it`` spoils one field of a valid baseline."""

    id: str
    kind: str  # "cluster" | "route" | "listener"
    break_it: Callable[[Any], None]
    path: str  # where the checker must report it


def _hcm(listener: listener_pb2.Listener) -> hcm_pb2.HttpConnectionManager:
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return manager


def _repack(listener: listener_pb2.Listener, change: Callable[[Any], None]) -> None:
    manager = _hcm(listener)
    change(manager)
    listener.filter_chains[0].filters[0].typed_config.Pack(manager)


def _first_route(config: route_pb2.RouteConfiguration) -> rc_pb.Route:
    return config.virtual_hosts[0].routes[0]


REJECTED = [
    Case(
        "negative connect_timeout",
        "cluster",
        lambda c: c.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=-1)),
        "connect_timeout",
    ),
    Case("zero connect_timeout", "cluster", lambda c: c.connect_timeout.Clear(), "connect_timeout"),
    Case(
        "negative outlier interval",
        "cluster",
        lambda c: c.outlier_detection.interval.CopyFrom(duration_pb2.Duration(seconds=-5)),
        "outlier_detection.interval",
    ),
    Case(
        "zero base ejection time",
        "cluster",
        lambda c: c.outlier_detection.base_ejection_time.SetInParent(),
        "outlier_detection.base_ejection_time",
    ),
    Case(
        "panic threshold over 100%",
        "cluster",
        lambda c: c.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=150)
        ),
        "common_lb_config.healthy_panic_threshold.value",
    ),
    Case(
        "SNI longer than 255 bytes (inside an Any)",
        "cluster",
        lambda c: c.transport_socket.typed_config.Pack(tls_pb2.UpstreamTlsContext(sni="a" * 300)),
        "transport_socket.typed_config.sni",
    ),
    Case("empty cluster name", "cluster", lambda c: setattr(c, "name", ""), "name"),
    Case(
        "negative route timeout (no annotation: any negative Duration)",
        "route",
        lambda r: _first_route(r).route.timeout.CopyFrom(duration_pb2.Duration(seconds=-1)),
        "virtual_hosts[0].routes[0].route.timeout",
    ),
    Case(
        "no domains",
        "route",
        lambda r: r.virtual_hosts[0].ClearField("domains"),
        "virtual_hosts[0].domains",
    ),
    Case(
        "missing route match (a required message)",
        "route",
        lambda r: _first_route(r).ClearField("match"),
        "virtual_hosts[0].routes[0].match",
    ),
    Case(
        "route without an action (a required oneof)",
        "route",
        lambda r: _first_route(r).ClearField("route"),
        "virtual_hosts[0].routes[0].action",
    ),
    Case(
        "header name with a newline",
        "route",
        lambda r: _first_route(r).request_headers_to_add.add(
            header=base_pb2.HeaderValue(key="bad\nheader", value="v")
        ),
        "virtual_hosts[0].routes[0].request_headers_to_add[0].header.key",
    ),
    Case(
        "undefined redirect code",
        "route",
        lambda r: setattr(_first_route(r).redirect, "response_code", 42),
        "virtual_hosts[0].routes[0].redirect.response_code",
    ),
    Case(
        "empty stat_prefix (inside an Any)",
        "listener",
        lambda li: _repack(li, lambda m: setattr(m, "stat_prefix", "")),
        "filter_chains[0].filters[0].typed_config.stat_prefix",
    ),
]


def _resources(kind: str, resource: Message) -> dict[str, list[Message]]:
    if kind == "cluster":
        return {"clusters": [resource]}
    if kind == "route":
        return {"routes": [resource], "clusters": [_cluster()]}
    return {"listeners": [resource], "clusters": [_cluster()]}


_BASELINES: dict[str, Callable[[], Message]] = {
    "cluster": _cluster,
    "route": _route_config,
    "listener": _listener,
}


@pytest.mark.parametrize("kind", sorted(_BASELINES))
def test_baselines_pass_the_checker_and_envoy(kind: str) -> None:
    resource = _BASELINES[kind]()
    assert pgv.check(resource) == []
    validate_config(static_bootstrap_for(**_resources(kind, resource)))


@pytest.mark.parametrize("case", REJECTED, ids=lambda c: c.id)
def test_checker_flags_what_envoy_rejects(case: Case) -> None:
    resource = _BASELINES[case.kind]()
    case.break_it(resource)
    found = pgv.check(resource)
    assert case.path in {v.path for v in found}, found
    with pytest.raises(EnvoyConfigError):
        validate_config(static_bootstrap_for(**_resources(case.kind, resource)))


# --- rule semantics that need no Envoy ------------------------------------------------


def test_messages_say_what_envoy_requires() -> None:
    cluster = _cluster()
    cluster.connect_timeout.Clear()
    cluster.outlier_detection.interval.CopyFrom(duration_pb2.Duration(seconds=-5))
    found = {str(v) for v in pgv.check(cluster)}
    assert "connect_timeout: must be greater than 0s" in found
    assert "outlier_detection.interval: must be greater than 0s" in found
    assert "outlier_detection.interval: must not be negative (got -5s)" in found


def test_unset_oneof_members_are_not_checked() -> None:
    # HeaderMatcher.string_match is one option of a oneof; with another option set, the
    # rules of string_match (required sub-fields) do not apply.
    config = _route_config()
    header = _first_route(config).match.headers.add(name="x-a", present_match=True)
    assert pgv.check(config) == []
    header.ClearField("present_match")
    header.string_match.SetInParent()  # set, but its own required oneof is empty
    paths = {v.path for v in pgv.check(config)}
    assert "virtual_hosts[0].routes[0].match.headers[0].string_match.match_pattern" in paths


def test_numeric_rules_on_wrappers_apply_only_when_set() -> None:
    # HttpConnectionManager.max_request_headers_kb is a UInt32Value with gt: 0.
    manager = hcm_pb2.HttpConnectionManager(stat_prefix="s")
    manager.route_config.SetInParent()
    manager.http_filters.add(name="envoy.filters.http.router")
    assert "max_request_headers_kb" not in {v.path for v in pgv.check(manager)}
    manager.max_request_headers_kb.value = 0
    assert "max_request_headers_kb" in {v.path for v in pgv.check(manager)}


def test_exclusive_range_and_in_rules() -> None:
    rules = validate_pb2.UInt32Rules(gt=10, lt=5)  # reversed bounds: outside [5, 10]
    assert pgv._numeric(3, rules, str) == []
    assert pgv._numeric(11, rules, str) == []
    assert pgv._numeric(7, rules, str) == ["must be less than 5 or greater than 10"]
    listed = validate_pb2.UInt32Rules(**{"in": [1, 2]}, not_in=[3])
    assert pgv._numeric(1, listed, str) == []
    assert pgv._numeric(4, listed, str) == ["must be one of 1, 2"]
    assert pgv._numeric(3, validate_pb2.UInt32Rules(not_in=[3]), str) == ["must not be 3"]
    assert pgv._numeric(0, validate_pb2.UInt32Rules(gt=1, ignore_empty=True), str) == []


def test_string_rules() -> None:
    s = validate_pb2.StringRules
    assert pgv._string("", s(min_len=1)) == ["must be at least 1 characters long"]
    assert pgv._string("", s(min_len=1, ignore_empty=True)) == []
    assert pgv._string("é", s(max_bytes=1)) == ["must be at most 1 bytes long"]
    assert pgv._string("é", s(max_len=1)) == []
    assert pgv._string("x-a", s(well_known_regex=validate_pb2.HTTP_HEADER_NAME)) == []
    assert pgv._string(":path", s(well_known_regex=validate_pb2.HTTP_HEADER_NAME)) == []
    assert pgv._string("a b", s(well_known_regex=validate_pb2.HTTP_HEADER_NAME)) != []
    # strict: false only forbids NUL, CR and LF, for names and values alike
    loose = s(well_known_regex=validate_pb2.HTTP_HEADER_NAME, strict=False)
    assert pgv._string("a b", loose) == []
    assert pgv._string("a\nb", loose) != []
    assert pgv._string("v\x7f", s(well_known_regex=validate_pb2.HTTP_HEADER_VALUE)) != []
    assert pgv._string("/a/b", s(pattern=r"^[^?#]+[^?#/]$")) == []
    assert pgv._string("/a/", s(pattern=r"^[^?#]+[^?#/]$")) != []
    assert pgv._string("10.0.0.1", s(ipv4=True)) == []
    assert pgv._string("::1", s(ipv4=True)) != []
    assert pgv._string("a.example.com", s(hostname=True)) == []
    assert pgv._string("-a.example.com", s(hostname=True)) != []
    assert pgv._string("b", s(**{"in": ["a"]})) == ["must be one of ['a']"]
    assert pgv._string("x", s(prefix="y")) == ["must start with 'y'"]


def test_maps_repeated_and_any() -> None:
    # Metadata.filter_metadata: map keys must not be empty (keys.string.min_len 1).
    metadata = base_pb2.Metadata()
    metadata.filter_metadata["ok"].CopyFrom(struct_pb2.Struct())
    assert pgv.check(metadata) == []
    metadata.filter_metadata[""].CopyFrom(struct_pb2.Struct())
    assert [v.path for v in pgv.check(metadata)] == ["filter_metadata[''] (key)"]
    # Router.strict_check_headers: each item must be one of a list.
    router = router_pb2.Router(strict_check_headers=["x-envoy-max-retries"])
    assert pgv.check(router) == []
    router.strict_check_headers.append("x-nope")
    assert [v.path for v in pgv.check(router)] == ["strict_check_headers[1]"]
    # An Any of a type this process does not know is left alone (not ours to judge).
    packed = any_pb2.Any(type_url="type.googleapis.com/no.such.Type", value=b"\x01")
    listener = _listener()
    listener.filter_chains[0].filters[0].typed_config.CopyFrom(packed)
    assert pgv.check(listener) == []


def test_every_golden_style_resource_passes() -> None:
    assert pgv.check(_listener()) == []
    assert pgv.check(_route_config()) == []
    assert pgv.check(_cluster()) == []


def test_the_header_patterns_in_pythons_re_match_exactly_what_re2_matches() -> None:
    """pgv matches the well-known header patterns with Python's re (google-re2 starves the
    event loop of the GIL); both engines must agree on every edge: a final newline (re's
    `$` matches before it), NUL and other controls, DEL, non-ASCII, ranges in classes."""
    samples = [
        "", "x-canary", ":authority", "::x", ":", "a b", "abc\n", "abc\r", "a\x00b", "\t",
        "tab\there", "del\x7f", "\x1f", "ü-header", "héllo wörld", "+,-.", "a*b", "a/b",
        "a\\b", "`~|^_", "quote\"d", "x\n", "\nx", "emoji😀", "a\u2028b", "a$", "^a",
    ]  # fmt: skip
    for pattern, fullmatch in pgv._HEADER_FULLMATCH.items():
        compiled = re2.compile(pattern)
        for value in samples:
            expected = compiled.search(value) is not None
            assert (fullmatch(value) is not None) == expected, (pattern, value)
