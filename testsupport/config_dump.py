"""Reading Envoy's ``/config_dump``: which dynamic resources it holds, at which version.

Pure functions over one dump, so a test can look at several resource types of the same
moment. ``EnvoyProcess`` wraps them for the live process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["listeners", "clusters", "routes", "endpoints", "secrets"]
State = Literal["active", "warming"]

_DUMP_TYPE: dict[Kind, str] = {
    "listeners": "ListenersConfigDump",
    "clusters": "ClustersConfigDump",
    "routes": "RoutesConfigDump",
    "endpoints": "EndpointsConfigDump",  # only with /config_dump?include_eds
    "secrets": "SecretsConfigDump",
}


@dataclass(frozen=True)
class DynamicResource:
    """One resource Envoy got over xDS, as shown by /config_dump."""

    name: str
    version_info: str
    config: dict[str, Any]  # the Listener, Cluster, ... as JSON (proto field names)
    state: State
    last_updated: str | None = None


def section(dump: dict[str, Any], kind: Kind) -> dict[str, Any]:
    """The ``*ConfigDump`` object for ``kind`` (empty when Envoy has none)."""
    suffix = "envoy.admin.v3." + _DUMP_TYPE[kind]
    for config in dump.get("configs", []):
        if str(config.get("@type", "")).endswith(suffix):
            return dict(config)
    return {}


def _entry(name: str, entry: dict[str, Any], config_key: str, state: State) -> DynamicResource:
    return DynamicResource(
        name=name,
        version_info=str(entry.get("version_info", "")),
        config=entry.get(config_key, {}),
        state=state,
        last_updated=entry.get("last_updated"),
    )


def _state(warming: bool) -> State:
    return "warming" if warming else "active"


def dynamic_listeners(dump: dict[str, Any], warming: bool = False) -> dict[str, DynamicResource]:
    """Listeners from LDS by name: the active ones, or those still warming."""
    state = _state(warming)
    out = {}
    for item in section(dump, "listeners").get("dynamic_listeners", []):
        if f"{state}_state" in item:
            out[item["name"]] = _entry(item["name"], item[f"{state}_state"], "listener", state)
    return out


def listener_errors(dump: dict[str, Any]) -> dict[str, str]:
    """Listener name -> Envoy's reason for the last rejected update (a NACK)."""
    out = {}
    for item in section(dump, "listeners").get("dynamic_listeners", []):
        if "error_state" in item:
            out[item["name"]] = str(item["error_state"].get("details", ""))
    return out


def dynamic_clusters(dump: dict[str, Any], warming: bool = False) -> dict[str, DynamicResource]:
    """Clusters from CDS by name: the active ones, or those waiting for their EDS."""
    key = "dynamic_warming_clusters" if warming else "dynamic_active_clusters"
    state = _state(warming)
    out = {}
    for item in section(dump, "clusters").get(key, []):
        name = item["cluster"]["name"]
        out[name] = _entry(name, item, "cluster", state)
    return out


def dynamic_route_configs(dump: dict[str, Any]) -> dict[str, DynamicResource]:
    """Route configurations from RDS by name."""
    out = {}
    for item in section(dump, "routes").get("dynamic_route_configs", []):
        name = item["route_config"]["name"]
        out[name] = _entry(name, item, "route_config", "active")
    return out


def dynamic_endpoints(dump: dict[str, Any]) -> dict[str, DynamicResource]:
    """ClusterLoadAssignments from EDS by cluster name (needs ``?include_eds``).

    Envoy 1.40 leaves their ``version_info`` empty in the dump; the EDS version is in the
    text stat ``cluster.<name>.version_text`` (``EnvoyProcess.dynamic_endpoints`` fills it).
    """
    out = {}
    for item in section(dump, "endpoints").get("dynamic_endpoint_configs", []):
        name = item["endpoint_config"]["cluster_name"]
        out[name] = _entry(name, item, "endpoint_config", "active")
    return out


def dynamic_secrets(dump: dict[str, Any], warming: bool = False) -> dict[str, DynamicResource]:
    """Secrets from SDS by name (Envoy redacts private keys in the dump)."""
    key = "dynamic_warming_secrets" if warming else "dynamic_active_secrets"
    state = _state(warming)
    out = {}
    for item in section(dump, "secrets").get(key, []):
        out[item["name"]] = _entry(item["name"], item, "secret", state)
    return out


def versions(dump: dict[str, Any]) -> dict[Kind, dict[str, str]]:
    """version_info of every active dynamic resource, by kind then name (see EDS above)."""
    return {
        "listeners": {n: r.version_info for n, r in dynamic_listeners(dump).items()},
        "clusters": {n: r.version_info for n, r in dynamic_clusters(dump).items()},
        "routes": {n: r.version_info for n, r in dynamic_route_configs(dump).items()},
        "endpoints": {n: r.version_info for n, r in dynamic_endpoints(dump).items()},
        "secrets": {n: r.version_info for n, r in dynamic_secrets(dump).items()},
    }
