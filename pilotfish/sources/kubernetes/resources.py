"""The kinds the Kubernetes source watches, and their API paths."""

from __future__ import annotations

from dataclasses import dataclass

ISTIO_GROUP = "networking.istio.io"
# Preference order when the cluster serves several (they share one schema).
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")


@dataclass(frozen=True)
class ResourceType:
    kind: str
    plural: str
    group: str  # "" for the core group
    versions: tuple[str, ...]  # in order of preference
    namespaced: bool = True
    # One LIST/WATCH per selector (the API has no "or"); (None,) means unfiltered.
    field_selectors: tuple[str | None, ...] = (None,)
    # Watched only in KubernetesSettings.secret_namespaces.
    secret: bool = False
    # The version is chosen by discovery among `versions` (a CRD may serve any subset).
    discovered: bool = False
    # Has a status subresource we write validationMessages to.
    istio: bool = False

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    def collection_path(self, version: str, namespace: str | None) -> str:
        base = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        scope = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        return f"{base}{scope}/{self.plural}"

    def object_path(self, version: str, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(version, namespace)}/{name}"


def _istio(kind: str, plural: str) -> ResourceType:
    return ResourceType(kind, plural, ISTIO_GROUP, ISTIO_VERSIONS, discovered=True, istio=True)


WATCHED: tuple[ResourceType, ...] = (
    _istio("Gateway", "gateways"),
    _istio("VirtualService", "virtualservices"),
    _istio("DestinationRule", "destinationrules"),
    _istio("ServiceEntry", "serviceentries"),
    _istio("Sidecar", "sidecars"),
    ResourceType("Service", "services", "", ("v1",)),
    ResourceType("EndpointSlice", "endpointslices", "discovery.k8s.io", ("v1",)),
    # Endpoint labels are their Pod's (DestinationRule subsets select by them).
    ResourceType("Pod", "pods", "", ("v1",)),
    ResourceType(
        "Secret",
        "secrets",
        "",
        ("v1",),
        field_selectors=("type=kubernetes.io/tls", "type=Opaque"),
        secret=True,
    ),
    ResourceType("Ingress", "ingresses", "networking.k8s.io", ("v1",)),
    ResourceType("IngressClass", "ingressclasses", "networking.k8s.io", ("v1",), namespaced=False),
    ResourceType("Namespace", "namespaces", "", ("v1",), namespaced=False),
)

WATCHED_BY_KIND: dict[str, ResourceType] = {r.kind: r for r in WATCHED}
