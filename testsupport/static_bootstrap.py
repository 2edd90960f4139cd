"""A bootstrap holding xDS resources as static resources, so a real Envoy can check them.

What pilotfish serves over ADS (listeners naming route configs by RDS, EDS clusters, TLS
contexts naming SDS secrets) cannot be loaded by ``envoy --mode validate`` as is: nothing
would fetch the referenced resources, so route tables and TLS contexts would go unchecked.
This inlines every reference, which doubles as a consistency check: a listener naming a
route config, a cluster needing endpoints or a TLS context naming a secret that is not
given is an error here, as it would leave a real proxy waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

_HCM = hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_SDS_SECRET_CONFIG = secret_pb2.SdsSecretConfig.DESCRIPTOR.full_name

Visitor = Callable[[Message], None]


class InconsistentResources(ValueError):
    """A resource refers to another (by RDS, EDS or SDS name) that was not given."""


def static_bootstrap_for(
    listeners: Iterable[listener_pb2.Listener] = (),
    routes: Iterable[route_pb2.RouteConfiguration] = (),
    clusters: Iterable[cluster_pb2.Cluster] = (),
    endpoints: Iterable[endpoint_pb2.ClusterLoadAssignment] = (),
    secrets: Iterable[secret_pb2.Secret] = (),
) -> dict[str, Any]:
    """A bootstrap (JSON-able) with the resources inlined as static ones.

    - each HttpConnectionManager's ``rds`` becomes the named RouteConfiguration as
      ``route_config``; a route config no listener uses gets a listener of its own (127.0.0.1,
      port 0) so it is checked all the same;
    - EDS clusters become STATIC ones whose ``load_assignment`` is the matching
      ClusterLoadAssignment (every other field kept);
    - secrets go to ``static_resources.secrets`` and ``sds_config`` is dropped from every
      SdsSecretConfig, which makes its name refer to those static secrets.

    The admin API listens on 127.0.0.1 port 0, so the result also runs as is.
    Raises ``InconsistentResources`` for a reference to a resource not given.
    """
    route_by_name = {r.name: r for r in routes}
    cla_by_name = {e.cluster_name: e for e in endpoints}
    secret_list = list(secrets)
    secret_names = {s.name for s in secret_list}
    used_routes: set[str] = set()

    def inline(msg: Message) -> None:
        full_name = msg.DESCRIPTOR.full_name
        if full_name == _HCM and msg.WhichOneof("route_specifier") == "rds":
            name = msg.rds.route_config_name  # type: ignore[attr-defined]
            if name not in route_by_name:
                raise InconsistentResources(f"uses route config {name!r}, which was not given")
            used_routes.add(name)
            msg.route_config.CopyFrom(route_by_name[name])  # type: ignore[attr-defined]
        elif full_name == _SDS_SECRET_CONFIG and msg.HasField("sds_config"):
            name = msg.name  # type: ignore[attr-defined]
            if name not in secret_names:
                raise InconsistentResources(f"uses SDS secret {name!r}, which was not given")
            msg.ClearField("sds_config")

    static_listeners = [_in_context("listener", li, _rewritten, li, inline) for li in listeners]
    static_clusters = [
        _in_context("cluster", c, _static_cluster, c, cla_by_name, inline) for c in clusters
    ]
    for index, name in enumerate(sorted(route_by_name.keys() - used_routes)):
        static_listeners.append(_listener_for_route(route_by_name[name], index))

    return {
        "node": {"id": "static-validate", "cluster": "static-validate"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [_to_dict(m) for m in static_listeners],
            "clusters": [_to_dict(m) for m in static_clusters],
            "secrets": [_to_dict(_rewritten(s, inline)) for s in secret_list],
        },
    }


def _in_context(kind: str, resource: Any, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, with the resource named in any InconsistentResources it raises."""
    try:
        return fn(*args)
    except InconsistentResources as exc:
        raise InconsistentResources(f"{kind} {resource.name!r} {exc}") from None


def _to_dict(msg: Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def _static_cluster(
    cluster: cluster_pb2.Cluster,
    cla_by_name: dict[str, endpoint_pb2.ClusterLoadAssignment],
    visit: Visitor,
) -> cluster_pb2.Cluster:
    out = _rewritten(cluster, visit)
    if out.type != cluster_pb2.Cluster.EDS:
        return out
    service = out.eds_cluster_config.service_name or out.name
    if service not in cla_by_name:
        raise InconsistentResources(f"uses EDS endpoints {service!r}, which were not given")
    out.type = cluster_pb2.Cluster.STATIC
    out.ClearField("eds_cluster_config")
    out.load_assignment.CopyFrom(cla_by_name[service])
    return out


def _listener_for_route(route: route_pb2.RouteConfiguration, index: int) -> listener_pb2.Listener:
    """A listener whose only job is to carry ``route`` into the validation."""
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=f"validate_route_{index}")
    manager.route_config.CopyFrom(route)
    manager.http_filters.add(name="envoy.filters.http.router").typed_config.Pack(
        router_pb2.Router()
    )
    listener = listener_pb2.Listener(name=f"validate-route-{index}-{route.name}")
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = 0  # set explicitly: the oneof is required
    listener.filter_chains.add().filters.add(
        name="envoy.filters.network.http_connection_manager"
    ).typed_config.Pack(manager)
    return listener


# -- a generic walk over a message, looking inside google.protobuf.Any ---------------------


def _rewritten(msg: Any, visit: Visitor) -> Any:
    """A copy of ``msg`` with ``visit`` applied to it and every message nested in it."""
    out = type(msg)()
    out.CopyFrom(msg)
    _walk(out, visit)
    return out


def _walk(msg: Message, visit: Visitor) -> None:
    if isinstance(msg, any_pb2.Any):
        _walk_any(msg, visit)
        return
    visit(msg)
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is not None:
                for item in value.values():
                    _walk(item, visit)
        elif field.is_repeated:
            for item in value:
                _walk(item, visit)
        else:
            _walk(value, visit)


def _walk_any(packed: any_pb2.Any, visit: Visitor) -> None:
    # Typed configs (HCM in a filter chain, TLS contexts in transport sockets) hide behind
    # Any; open those whose type is known to this process, rewrite them and pack again.
    type_name = packed.type_url.rpartition("/")[2]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        return
    inner = message_factory.GetMessageClass(descriptor)()
    packed.Unpack(inner)
    before = inner.SerializeToString(deterministic=True)
    _walk(inner, visit)
    if inner.SerializeToString(deterministic=True) != before:
        packed.Pack(inner)
