"""Istio's MeshConfig (`serve --mesh-config FILE`): the mesh-wide settings translation reads.

A MeshConfig copied from a cluster (the `mesh` key of the `istio` ConfigMap, or the
ConfigMap itself) must load: the fields pilotfish acts on are parsed strictly (a wrong
type is an error naming the field, and the file is refused); every other field Istio
defines is named once in a warning; a key pilotfish does not know as a MeshConfig field is
a warning too, per key (a typo, or a field of an Istio newer than pilotfish's list: a
config copied from a cluster must still load). Unset fields take Istio's defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from pilotfish.api.durations import duration_problem, normalize_durations, to_millis
from pilotfish.api.mesh.v1alpha1 import config_pb2 as mesh_pb
from pilotfish.api.networking.v1alpha3 import virtual_service_pb2 as vs_pb
from pilotfish.model.errors import ConfigError
from pilotfish.model.spec_errors import locate_spec_error

KIND = "MeshConfig"
OutboundPolicy = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
InboundPolicy = Literal["PASSTHROUGH", "LOCALHOST"]

# Istio's MeshConfig fields that pilotfish does not act on (istio/api mesh/v1alpha1):
# accepted, and named in one warning.
ISTIO_FIELDS_NOT_ACTED_ON = frozenset(
    {
        "accessLogEncoding", "accessLogFile", "accessLogFormat", "ca", "caCertificates",
        "certificates", "configSources", "defaultConfig", "defaultDestinationRuleExportTo",
        "defaultProviders", "defaultServiceExportTo", "defaultTrafficPolicy",
        "defaultVirtualServiceExportTo", "disableEnvoyListenerLog", "discoverySelectors",
        "dnsRefreshRate", "enableAutoMtls", "enableEnvoyAccessLogService",
        "enablePrometheusMerge", "enableTracing", "extensionProviders", "h2UpgradePolicy",
        "hboneIdleTimeout", "inboundClusterStatName", "ingressClass",
        "ingressControllerMode", "ingressSelector", "ingressService", "localityLbSetting",
        "meshMtls", "outboundClusterStatName", "pathNormalization", "protocolDetectionTimeout",
        "proxyHttpPort", "proxyInboundListenPort", "proxyListenPort", "serviceEntryVisibility",
        "serviceScopeConfigs", "serviceSettings", "tcpKeepalive", "tlsDefaults", "trustDomain",
        "trustDomainAliases", "verifyCertificateAtClient", "zoneAwareLbSetting",
    }
)  # fmt: skip
# Fields Istio removed (reserved in its proto): older ConfigMaps still carry them.
ISTIO_REMOVED_FIELDS = frozenset(
    {
        "authPolicy", "disableMixerHttpReports", "disablePolicyChecks", "disableReportBatch",
        "enableClientSidePolicyCheck", "enableSdsTokenMount", "fileFlushInterval",
        "fileFlushMinSize", "mixerAddress", "mixerCheckServer", "mixerReportServer",
        "policyCheckFailOpen", "rdsRefreshDelay", "reportBatchMaxEntries",
        "reportBatchMaxTime", "sdsRefreshDelay", "sdsUdsPath", "sdsUseK8sSaJwt",
        "sidecarToTelemetrySessionAffinity", "terminationDrainDuration", "thriftConfig",
    }
)  # fmt: skip

_DESCRIPTOR = cast(Descriptor, mesh_pb.MeshConfig.DESCRIPTOR)
ACTED_ON = frozenset(f.json_name for f in _DESCRIPTOR.fields) | frozenset(
    f.name for f in _DESCRIPTOR.fields
)


@dataclass(frozen=True)
class MeshSettings:
    """What translation reads of the mesh config; the defaults are Istio's."""

    outbound_policy: OutboundPolicy = "ALLOW_ANY"
    # Where a sidecar's inbound clusters connect: the original destination (the pod's IP),
    # or 127.0.0.1 (LOCALHOST, for applications that listen on loopback only).
    inbound_policy: InboundPolicy = "PASSTHROUGH"
    root_namespace: str = "istio-system"
    connect_timeout_ms: int = 10_000
    # None: Istio's built-in default retry policy.
    default_http_retry: vs_pb.HTTPRetry | None = field(default=None, compare=False)
    source: str = ""  # the file it came from, for problems found while translating

    def __eq__(self, other: object) -> bool:
        # Compared by value (the proto too), so a reload that changes nothing is no change.
        if not isinstance(other, MeshSettings):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[object, ...]:
        retry = (
            None
            if self.default_http_retry is None
            else self.default_http_retry.SerializeToString(deterministic=True)
        )
        return (
            self.outbound_policy,
            self.inbound_policy,
            self.root_namespace,
            self.connect_timeout_ms,
            retry,
        )


class MeshConfigError(ValueError):
    """The mesh config cannot be used; `errors` says where."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("; ".join(e.describe() for e in errors))


def load_mesh_config(path: Path) -> tuple[MeshSettings, list[ConfigError]]:
    """Read a mesh config file: settings and warnings, or MeshConfigError."""
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MeshConfigError([_problem(source, f"cannot read the mesh config: {exc}")]) from None
    return parse_mesh_config(data, source)


def parse_mesh_config(data: Any, source: str) -> tuple[MeshSettings, list[ConfigError]]:
    data = _unwrap_config_map(data, source)
    if data is None:
        return MeshSettings(source=source), []
    if not isinstance(data, Mapping):
        raise MeshConfigError(
            [_problem(source, f"a mesh config is a mapping, got {type(data).__name__}")]
        )
    known = ACTED_ON | ISTIO_FIELDS_NOT_ACTED_ON | ISTIO_REMOVED_FIELDS
    warnings = [
        _problem(
            source,
            f"{k!r} is not a MeshConfig field pilotfish knows (a typo, or a newer Istio's "
            "field?): ignored",
            str(k),
            severity="warning",
        )
        for k in sorted(k for k in data if k not in known)
    ]
    ignored = sorted(k for k in data if k in ISTIO_FIELDS_NOT_ACTED_ON)
    if ignored:
        warnings.append(
            _problem(
                source,
                "pilotfish does not act on these MeshConfig fields: " + ", ".join(ignored),
                severity="warning",
            )
        )
    removed = sorted(k for k in data if k in ISTIO_REMOVED_FIELDS)
    if removed:
        warnings.append(
            _problem(
                source,
                "fields Istio has removed, ignored: " + ", ".join(removed),
                severity="warning",
            )
        )
    used = {k: v for k, v in data.items() if k in ACTED_ON}
    message = _parse(used, source)
    settings, more = _settings(message, used, source)
    return settings, [*warnings, *more]


def _unwrap_config_map(data: Any, source: str) -> Any:
    """Accept the `istio` ConfigMap too: its `data.mesh` holds the mesh config as text."""
    if not (isinstance(data, Mapping) and data.get("kind") == "ConfigMap"):
        return data
    mesh = (data.get("data") or {}).get("mesh")
    if mesh is None:
        raise MeshConfigError([_problem(source, "the ConfigMap has no data.mesh", "data.mesh")])
    try:
        return yaml.safe_load(mesh)
    except yaml.YAMLError as exc:
        raise MeshConfigError(
            [_problem(source, f"data.mesh is not YAML: {exc}", "data.mesh")]
        ) from None


def _parse(used: dict[str, Any], source: str) -> mesh_pb.MeshConfig:
    message = mesh_pb.MeshConfig()
    try:
        json_format.ParseDict(normalize_durations(used, mesh_pb.MeshConfig), message)
    except json_format.ParseError as exc:
        located = locate_spec_error(normalize_durations(used, mesh_pb.MeshConfig), _DESCRIPTOR)
        where, why = located if located else ("", str(exc))
        raise MeshConfigError([_problem(source, why, where.removeprefix("spec."))]) from None
    return message


def _settings(
    message: mesh_pb.MeshConfig, used: dict[str, Any], source: str
) -> tuple[MeshSettings, list[ConfigError]]:
    settings = MeshSettings(source=source)
    problems = []
    if message.HasField("connect_timeout"):
        d = message.connect_timeout
        if duration_problem(d, positive=True) is not None:
            raise MeshConfigError(
                [
                    _problem(
                        source, "connectTimeout must be positive (1ms or more)", "connectTimeout"
                    )
                ]
            )
        settings = replace(settings, connect_timeout_ms=to_millis(d))
    if message.root_namespace:
        settings = replace(settings, root_namespace=message.root_namespace)
    if message.HasField("outbound_traffic_policy"):
        mode = message.outbound_traffic_policy.mode
        policy = mesh_pb.MeshConfig.OutboundTrafficPolicy
        if mode == policy.REGISTRY_ONLY and "mode" in (used.get("outboundTrafficPolicy") or {}):
            settings = replace(settings, outbound_policy="REGISTRY_ONLY")
        elif mode == policy.ALLOW_ANY_DYNAMIC_DNS:
            problems.append(
                _problem(
                    source,
                    "ALLOW_ANY_DYNAMIC_DNS is not supported: ALLOW_ANY applies",
                    "outboundTrafficPolicy.mode",
                    severity="warning",
                )
            )
    inbound = mesh_pb.MeshConfig.InboundTrafficPolicy
    if message.inbound_traffic_policy.mode == inbound.LOCALHOST:
        settings = replace(settings, inbound_policy="LOCALHOST")
    if message.HasField("default_http_retry_policy"):
        settings = replace(settings, default_http_retry=message.default_http_retry_policy)
    return settings, problems


def _problem(
    source: str, message: str, field: str | None = None, severity: str = "error"
) -> ConfigError:
    return ConfigError(message, file=source, kind=KIND, field=field, severity=severity)
