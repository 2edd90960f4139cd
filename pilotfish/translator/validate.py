"""`pilotfish validate` without any proxy connected: translate for the gateways and the
sidecars the config implies, and report everything found (the /debug/config_status
shape)."""

from __future__ import annotations

from typing import Any, cast

from pilotfish.api.networking.v1alpha3 import gateway_pb2 as gw_pb
from pilotfish.api.networking.v1alpha3 import sidecar_pb2 as sc_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.model.errors import ConfigError
from pilotfish.node_id import NodeId
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.ingress import with_ingresses
from pilotfish.translator.labels import selects
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.registry import ServiceRegistry
from pilotfish.translator.translate import translate

DEFAULT_GATEWAY_NAMESPACE = "istio-system"


def implied_gateway_proxies(config: ConfigSet) -> list[Proxy]:
    """One router per distinct Gateway selector, in the namespace of a Service that
    selects those labels (where the gateway pods run), else `istio-system`, where Istio
    installs its gateways (a Gateway itself often lives in `default`)."""
    registry = ServiceRegistry(config)
    proxies: dict[tuple[str, tuple[tuple[str, str], ...]], Proxy] = {}
    # Istio's Ingresses imply the ingress gateway too, even with no Gateway written.
    for gateway in with_ingresses(config, Diagnostics()).istio("Gateway"):
        labels = dict(cast(gw_pb.Gateway, gateway.spec).selector)
        fronting = [
            s
            for s in registry.services()
            if s.service.selector and selects(s.service.selector, labels)
        ]
        namespace = fronting[0].namespace if fronting else DEFAULT_GATEWAY_NAMESPACE
        key = (namespace, tuple(sorted(labels.items())))
        if key not in proxies:
            node_id = str(NodeId.for_pod("router", "127.0.0.1", "validate", namespace))
            proxies[key] = Proxy.from_node(node_id, {"LABELS": labels, "NAMESPACE": namespace})
    return [proxies[k] for k in sorted(proxies)]


def implied_sidecar_proxies(config: ConfigSet) -> list[Proxy]:
    """A sidecar for each Sidecar resource, in its namespace with its workloadSelector's
    labels: the Sidecar applies to it, so its problems are found."""
    proxies: dict[tuple[str, tuple[tuple[str, str], ...]], Proxy] = {}
    for sidecar in config.istio("Sidecar"):
        spec = cast(sc_pb.Sidecar, sidecar.spec)
        labels = dict(spec.workload_selector.labels)
        namespace = sidecar.meta.namespace
        key = (namespace, tuple(sorted(labels.items())))
        if key not in proxies:
            node_id = str(NodeId.for_pod("sidecar", "127.0.0.1", "validate", namespace))
            proxies[key] = Proxy.from_node(node_id, {"LABELS": labels, "NAMESPACE": namespace})
    return [proxies[k] for k in sorted(proxies)]


def validation_report(config: ConfigSet) -> list[dict[str, Any]]:
    found: dict[ConfigError, None] = dict.fromkeys(config.errors)
    for proxy in (*implied_gateway_proxies(config), *implied_sidecar_proxies(config)):
        found.update(dict.fromkeys(translate(config, proxy).status))
    return [e.to_json() for e in found]
