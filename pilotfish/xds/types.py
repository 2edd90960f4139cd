"""xDS resource type URLs, the order they are pushed in, and their short names."""

from __future__ import annotations

from typing import Final

CLUSTER: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET: Final = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break: a cluster exists (and has endpoints) before a route points at it,
# a route configuration exists before the listener that uses it is served traffic.
PUSH_ORDER: Final[tuple[str, ...]] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)

SHORT_NAMES: Final[dict[str, str]] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    SECRET: "sds",
}

# In state-of-the-world xDS only these types mean "everything" when no name is asked for,
# and each response for them is the full state (a resource left out is deleted).
WILDCARD_TYPES: Final[frozenset[str]] = frozenset({CLUSTER, LISTENER})

# The type whose response makes Envoy (re)create the resources that need the key type:
# a re-created cluster warms only when it gets EDS, a re-created listener when it gets RDS.
DEPENDS_ON: Final[dict[str, str]] = {ENDPOINT: CLUSTER, ROUTE: LISTENER}


def short_name(type_url: str) -> str:
    """``cds``/``eds``/... for logs and the debug endpoint; the URL itself if unknown."""
    return SHORT_NAMES.get(type_url, type_url)
