"""pilotfish.translator.ip_dependence: when a proxy's IP changes its translation."""

from __future__ import annotations

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.node_id import NodeId
from pilotfish.translator.ip_dependence import ip_matters
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate

WORLD = """\
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ratings, namespace: default}
spec:
  workloadSelector: {labels: {app: ratings}}
  ingress: [{port: {number: 9080, protocol: HTTP}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: default}
spec:
  hosts: [vm.internal]
  ports: [{number: 80, name: http}]
  endpoints: [{address: 10.2.0.5}]
"""


def config() -> ConfigSet:
    return build_config_set([parse_manifest_text(WORLD, "world.yaml")])


def proxy(kind: str, ip: str, app: str) -> Proxy:
    node_id = str(NodeId.for_pod(kind, ip, f"{app}-1", "default"))
    return Proxy.from_node(node_id, {"LABELS": {"app": app}})


def test_when_the_ip_matters() -> None:
    matters = ip_matters(config())
    assert not matters(proxy("sidecar", "10.1.0.1", "reviews"))
    assert matters(proxy("sidecar", "10.1.0.1", "ratings"))  # its Sidecar has ingress
    assert matters(proxy("sidecar", "10.2.0.5", "other"))  # the entry's endpoint
    assert matters(proxy("router", "10.2.0.5", "gw"))
    assert not matters(proxy("router", "10.1.0.1", "ratings"))  # Sidecars are for sidecars
    assert matters(proxy("sidecar", "fd00::1", "reviews"))  # binds to ::6


def test_where_it_does_not_matter_the_translation_is_the_same() -> None:
    """The claim the shape key rests on, for sidecars of one workload."""
    a, b = (translate(config(), proxy("sidecar", ip, "reviews")) for ip in ("10.1.0.1", "10.9.9.9"))
    assert (a.listeners, a.routes, a.clusters, a.endpoints) == (
        b.listeners,
        b.routes,
        b.clusters,
        b.endpoints,
    )
    c, d = (translate(config(), proxy("sidecar", ip, "ratings")) for ip in ("10.1.0.1", "10.9.9.9"))
    assert c.listeners != d.listeners
