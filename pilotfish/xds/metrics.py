"""Prometheus metrics of the xDS server.

Defined once, at import, on the default registry: a process (a test run especially)
creates many ``AdsServer`` objects, and registering a metric twice is an error.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTED_PROXIES = Gauge(
    "pilotfish_xds_connected_proxies",
    "Live ADS streams (a proxy that reconnected counts once per stream).",
)
PUSHES = Counter(
    "pilotfish_xds_pushes",
    "xDS responses written to proxies, by type (cds, eds, lds, rds, sds).",
    ["type"],
)
PUSHED_RESOURCES = Counter(
    "pilotfish_xds_pushed_resources",
    "Resources carried by the xDS responses written, by type (delta sends only the "
    "changed ones; state of the world all of a wildcard type, the subscribed of others).",
    ["type"],
)
PUSH_ERRORS = Counter(
    "pilotfish_xds_push_errors",
    "xDS responses that could not be written (the stream broke mid-push), by type.",
    ["type"],
)
NACKS = Counter(
    "pilotfish_xds_nacks",
    "Responses proxies rejected (NACKed), by type.",
    ["type"],
)
