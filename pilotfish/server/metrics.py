"""Prometheus metrics of config handling (the xDS side has its own in pilotfish.xds.metrics).

Defined once at import, on the default registry, so many ControlPlanes (tests) share them.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONFIG_ERRORS = Gauge(
    "pilotfish_config_errors",
    "Problems in the current configuration, by severity (see /debug/config_status).",
    ["severity"],
)
CONFIG_RELOADS = Counter(
    "pilotfish_config_reloads_total", "Times the configuration was read and applied."
)
TRANSLATION_SECONDS = Histogram(
    "pilotfish_translation_seconds",
    "Time to translate the configuration for one proxy.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
)
