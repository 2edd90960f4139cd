"""Strict parsing of one manifest into a typed object, or errors that say exactly why not.

Istio specs go through `json_format.ParseDict` on our own protos, which gives exact field
names, enums, durations and oneofs, and a precise error for an unknown or mistyped field.
Kubernetes kinds are read field by field, checking the types of the fields we use.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from pilotfish.api.durations import normalize_durations
from pilotfish.api.kinds import API_VERSIONS, SPEC_TYPES, parse_spec
from pilotfish.model.documents import RawDocument
from pilotfish.model.errors import ConfigError
from pilotfish.model.objects import (
    ConfigObject,
    EndpointAddress,
    EndpointPort,
    EndpointSet,
    EndpointSubset,
    Ingress,
    IngressBackend,
    IngressClass,
    IngressPath,
    IngressRule,
    IngressTLS,
    IstioObject,
    Namespace,
    ObjectMeta,
    ObjectRef,
    Origin,
    Pod,
    Secret,
    Service,
    ServicePort,
)
from pilotfish.model.spec_errors import locate_spec_error

_CORE_KINDS = {"Service", "Endpoints", "Secret", "Namespace", "Pod"}
_CLUSTER_SCOPED = {"Namespace", "IngressClass"}

SUPPORTED_KINDS: dict[str, tuple[str, ...]] = {
    **{kind: API_VERSIONS for kind in SPEC_TYPES},
    **{kind: ("v1",) for kind in _CORE_KINDS},
    "EndpointSlice": ("discovery.k8s.io/v1",),
    "Ingress": ("networking.k8s.io/v1", "networking.k8s.io/v1beta1", "extensions/v1beta1"),
    "IngressClass": ("networking.k8s.io/v1", "networking.k8s.io/v1beta1"),
}


# Kubernetes kinds that hold no traffic configuration (a manifest such as Istio's
# bookinfo.yaml mixes them with Services): skipped without a word, as istiod never reads
# them either.
IGNORED_KINDS = frozenset(
    {
        "ClusterRole", "ClusterRoleBinding", "ConfigMap", "CronJob",
        "CustomResourceDefinition", "DaemonSet", "Deployment", "HorizontalPodAutoscaler",
        "Job", "LimitRange", "NetworkPolicy", "PersistentVolume", "PersistentVolumeClaim",
        "PodDisruptionBudget", "ReplicaSet", "ResourceQuota", "Role", "RoleBinding",
        "ServiceAccount", "StatefulSet",
    }
)  # fmt: skip

# Istio kinds pilotfish does not act on: reported, never silently ignored. Security
# policies are errors (what they promise is not enforced); the rest warnings.
UNSUPPORTED_ISTIO_KINDS = {
    "PeerAuthentication": ("error", "mutual TLS between workloads is not supported"),
    "AuthorizationPolicy": ("error", "authorization policies are not enforced"),
    "RequestAuthentication": ("error", "request authentication (JWT) is not enforced"),
    "EnvoyFilter": ("warning", "EnvoyFilter patches are not applied"),
    "Telemetry": ("warning", "Telemetry is not applied"),
    "WasmPlugin": ("warning", "Wasm plugins are not loaded"),
    "ProxyConfig": ("warning", "ProxyConfig is not applied"),
    "WorkloadGroup": ("warning", "WorkloadGroups are not read"),
}


class FieldError(Exception):
    """A problem at a field path inside the document."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_document(doc: RawDocument) -> ConfigObject | ConfigError | None:
    """Turn one manifest into a typed object, or the first error that stops it; None for
    a kind that holds no traffic configuration (IGNORED_KINDS)."""
    namespace, name = doc.meta()
    kind = doc.kind
    if kind and kind not in _CLUSTER_SCOPED and not namespace:
        namespace = "default"  # where the object would live: errors name it as the translator does

    def error(message: str, field: str | None = None) -> ConfigError:
        return ConfigError(message, doc.file, doc.index, kind or None, namespace, name, field)

    if not kind:
        return error("missing `kind`", "kind")
    api_version = doc.body.get("apiVersion")
    if kind in IGNORED_KINDS:
        return None
    if kind in UNSUPPORTED_ISTIO_KINDS and str(api_version).startswith(
        (
            "security.istio.io/",
            "networking.istio.io/",
            "telemetry.istio.io/",
            "extensions.istio.io/",
        )
    ):
        severity, why = UNSUPPORTED_ISTIO_KINDS[kind]
        return ConfigError(
            f"{kind} is not supported by pilotfish ({why}): ignored",
            doc.file, doc.index, kind, namespace, name, "kind", severity,
        )  # fmt: skip
    if kind not in SUPPORTED_KINDS:
        supported = ", ".join(sorted(SUPPORTED_KINDS))
        return error(f"unsupported kind {kind!r} (supported: {supported})", "kind")
    if api_version not in SUPPORTED_KINDS[kind]:
        wanted = " or ".join(SUPPORTED_KINDS[kind])
        return error(
            f"apiVersion {api_version!r} is not served for {kind}: use {wanted}", "apiVersion"
        )
    try:
        meta = _parse_meta(doc.body.get("metadata"), cluster_scoped=kind in _CLUSTER_SCOPED)
        origin = Origin(doc.file, doc.index)
        return _PARSERS[kind](doc.body, meta, origin)
    except FieldError as exc:
        return error(exc.message, exc.field)


# --- metadata ---------------------------------------------------------------------------

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _parse_meta(raw: Any, *, cluster_scoped: bool) -> ObjectMeta:
    meta = _mapping(raw, "metadata")
    name = _string(meta.get("name"), "metadata.name")
    if not name:
        raise FieldError("metadata.name", "metadata.name is required")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise FieldError("metadata.name", f"{name!r} is not a valid name (lowercase DNS subdomain)")
    namespace = (
        "" if cluster_scoped else _string(meta.get("namespace"), "metadata.namespace") or "default"
    )
    if namespace and not _DNS_LABEL.match(namespace):
        raise FieldError("metadata.namespace", f"{namespace!r} is not a valid namespace name")
    return ObjectMeta(
        name=name,
        namespace=namespace,
        labels=_string_map(meta.get("labels"), "metadata.labels"),
        annotations=_string_map(meta.get("annotations"), "metadata.annotations"),
        creation_timestamp=_string(meta.get("creationTimestamp"), "metadata.creationTimestamp"),
        resource_version=_string(meta.get("resourceVersion"), "metadata.resourceVersion"),
    )


# --- Istio kinds ------------------------------------------------------------------------

_PROTO_PATH = re.compile(r'at "[A-Za-z0-9_]+\.?([^"]*)"')


def _parse_istio(kind: str) -> Callable[[Mapping[str, Any], ObjectMeta, Origin], ConfigObject]:
    def parse(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
        spec = body.get("spec")
        if spec is None:
            raise FieldError("spec", "spec is required")
        if not isinstance(spec, dict):
            raise FieldError("spec", f"spec must be a mapping, got {type(spec).__name__}")
        try:
            message = parse_spec(kind, spec)
        except json_format.ParseError as exc:
            normalized = normalize_durations(dict(spec), SPEC_TYPES[kind])
            descriptor = cast(Descriptor, SPEC_TYPES[kind].DESCRIPTOR)
            located = locate_spec_error(normalized, descriptor)
            if located is not None:
                raise FieldError(*located) from None
            raise FieldError(_proto_error_path(str(exc)), _proto_error_message(str(exc))) from None
        return IstioObject(kind, meta, message, origin)

    return parse


def _proto_error_path(text: str) -> str:
    """json_format may say where: `at "Gateway.servers[0].port"` -> `spec.servers[0].port`."""
    found = _PROTO_PATH.findall(text)
    return "spec" + ("." + found[-1] if found and found[-1] else "")


def _proto_error_message(text: str) -> str:
    return re.sub(r'\s*at "[^"]*"', "", text).replace("Failed to parse ", "").strip().rstrip(".")


# --- Kubernetes kinds -------------------------------------------------------------------


def _parse_service(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    spec = _mapping(body.get("spec"), "spec")
    ports = []
    for i, raw in enumerate(_list(spec.get("ports"), "spec.ports")):
        path = f"spec.ports[{i}]"
        port_map = _mapping(raw, path)
        port = _port_number(port_map.get("port"), f"{path}.port", required=True)
        target = port_map.get("targetPort")
        target_port: int | str
        if target is None:
            target_port = port
        elif isinstance(target, str) and not target.isdigit():
            target_port = target
        else:
            target_port = _port_number(target, f"{path}.targetPort", required=True)
        ports.append(
            ServicePort(
                port=port,
                name=_string(port_map.get("name"), f"{path}.name"),
                target_port=target_port,
                protocol=_string(port_map.get("protocol"), f"{path}.protocol") or "TCP",
                app_protocol=_string(port_map.get("appProtocol"), f"{path}.appProtocol"),
            )
        )
    if len(ports) > 1 and any(not p.name for p in ports):
        raise FieldError("spec.ports", "every port must have a name when a Service has several")
    return Service(
        meta=meta,
        ports=tuple(ports),
        selector=_string_map(spec.get("selector"), "spec.selector"),
        type=_string(spec.get("type"), "spec.type") or "ClusterIP",
        cluster_ip=_string(spec.get("clusterIP"), "spec.clusterIP"),
        external_name=_string(spec.get("externalName"), "spec.externalName"),
        origin=origin,
    )


def _parse_endpoint_slice(
    body: Mapping[str, Any], meta: ObjectMeta, origin: Origin
) -> ConfigObject:
    service = meta.labels.get("kubernetes.io/service-name", "")
    if not service:
        raise FieldError(
            "metadata.labels",
            "an EndpointSlice needs the label kubernetes.io/service-name naming its Service",
        )
    address_type = _string(body.get("addressType"), "addressType") or "IPv4"
    ports = tuple(
        _endpoint_port(raw, f"ports[{i}]")
        for i, raw in enumerate(_list(body.get("ports"), "ports"))
    )
    endpoints = []
    for i, raw in enumerate(_list(body.get("endpoints"), "endpoints")):
        path = f"endpoints[{i}]"
        ep = _mapping(raw, path)
        addresses = tuple(
            _string(a, f"{path}.addresses[{j}]")
            for j, a in enumerate(_list(ep.get("addresses"), f"{path}.addresses"))
        )
        if not addresses:
            raise FieldError(f"{path}.addresses", "an endpoint needs at least one address")
        conditions = _mapping(ep.get("conditions", {}), f"{path}.conditions")
        ready = conditions.get("ready", True)  # the API says: unknown means ready
        if not isinstance(ready, bool):
            raise FieldError(f"{path}.conditions.ready", "must be true or false")
        endpoints.append(
            EndpointAddress(
                addresses=addresses,
                ready=ready,
                target_ref=_object_ref(ep.get("targetRef"), f"{path}.targetRef", meta.namespace),
                hostname=_string(ep.get("hostname"), f"{path}.hostname"),
            )
        )
    return EndpointSet(
        meta=meta,
        service_name=service,
        subsets=(EndpointSubset(ports, tuple(endpoints)),),
        address_type=address_type,
        origin=origin,
    )


def _parse_endpoints(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    subsets = []
    for i, raw in enumerate(_list(body.get("subsets"), "subsets")):
        path = f"subsets[{i}]"
        subset = _mapping(raw, path)
        ports = tuple(
            _endpoint_port(p, f"{path}.ports[{j}]")
            for j, p in enumerate(_list(subset.get("ports"), f"{path}.ports"))
        )
        addresses: list[EndpointAddress] = []
        for field_name, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, a in enumerate(_list(subset.get(field_name), f"{path}.{field_name}")):
                apath = f"{path}.{field_name}[{j}]"
                amap = _mapping(a, apath)
                ip = _string(amap.get("ip"), f"{apath}.ip")
                if not ip:
                    raise FieldError(f"{apath}.ip", "an address needs an ip")
                addresses.append(
                    EndpointAddress(
                        addresses=(ip,),
                        ready=ready,
                        target_ref=_object_ref(
                            amap.get("targetRef"), f"{apath}.targetRef", meta.namespace
                        ),
                        hostname=_string(amap.get("hostname"), f"{apath}.hostname"),
                    )
                )
        subsets.append(EndpointSubset(ports, tuple(addresses)))
    return EndpointSet(
        meta=meta, service_name=meta.name, subsets=tuple(subsets), origin=origin, kind="Endpoints"
    )


def _parse_secret(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    data: dict[str, bytes] = {}
    for key, value in _mapping(body.get("data", {}), "data").items():
        try:
            data[str(key)] = base64.b64decode(_string(value, f"data.{key}"), validate=True)
        except (binascii.Error, ValueError):
            raise FieldError(f"data.{key}", "not valid base64") from None
    for key, value in _mapping(body.get("stringData", {}), "stringData").items():
        data[str(key)] = _string(value, f"stringData.{key}").encode()
    return Secret(
        meta=meta, type=_string(body.get("type"), "type") or "Opaque", data=data, origin=origin
    )


def _parse_namespace(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    return Namespace(meta=meta, origin=origin)


def _parse_ingress(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    spec = _mapping(body.get("spec"), "spec")
    default = spec.get("defaultBackend", spec.get("backend"))  # v1, v1beta1
    rules = []
    for r, raw in enumerate(_list(spec.get("rules"), "spec.rules")):
        path = f"spec.rules[{r}]"
        rule = _mapping(raw, path)
        http = _mapping(rule.get("http"), f"{path}.http")
        paths = []
        for p, raw_path in enumerate(_list(http.get("paths"), f"{path}.http.paths")):
            ppath = f"{path}.http.paths[{p}]"
            item = _mapping(raw_path, ppath)
            path_type = (
                _string(item.get("pathType"), f"{ppath}.pathType") or "ImplementationSpecific"
            )
            if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
                raise FieldError(
                    f"{ppath}.pathType",
                    f"{path_type!r} is not Exact, Prefix or ImplementationSpecific",
                )
            paths.append(
                IngressPath(
                    path=_string(item.get("path"), f"{ppath}.path") or "/",
                    path_type=path_type,
                    backend=_ingress_backend(item.get("backend"), f"{ppath}.backend"),
                )
            )
        rules.append(
            IngressRule(host=_string(rule.get("host"), f"{path}.host").lower(), paths=tuple(paths))
        )
    tls = []
    for t, raw in enumerate(_list(spec.get("tls"), "spec.tls")):
        item = _mapping(raw, f"spec.tls[{t}]")
        hosts = tuple(
            _string(h, f"spec.tls[{t}].hosts[{i}]").lower()
            for i, h in enumerate(_list(item.get("hosts"), f"spec.tls[{t}].hosts"))
        )
        tls.append(IngressTLS(hosts, _string(item.get("secretName"), f"spec.tls[{t}].secretName")))
    return Ingress(
        meta=meta,
        class_name=_string(spec.get("ingressClassName"), "spec.ingressClassName"),
        rules=tuple(rules),
        tls=tuple(tls),
        default_backend=None
        if default is None
        else _ingress_backend(default, "spec.defaultBackend"),
        origin=origin,
    )


def _ingress_backend(raw: Any, path: str) -> IngressBackend:
    backend = _mapping(raw, path)
    if "serviceName" in backend:  # v1beta1
        port: Any = backend.get("servicePort")
        name = _string(backend.get("serviceName"), f"{path}.serviceName")
        port_path = f"{path}.servicePort"
    else:
        service = _mapping(backend.get("service"), f"{path}.service")
        name = _string(service.get("name"), f"{path}.service.name")
        port_map = _mapping(service.get("port"), f"{path}.service.port")
        port = port_map.get("number", port_map.get("name"))
        port_path = f"{path}.service.port"
    if not name:
        raise FieldError(path, "a backend needs a service (resource backends are not supported)")
    if isinstance(port, str) and not port.isdigit():
        return IngressBackend(name, port)
    return IngressBackend(name, _port_number(port, port_path, required=True))


def _parse_ingress_class(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    spec = _mapping(body.get("spec"), "spec")
    return IngressClass(
        meta=meta, controller=_string(spec.get("controller"), "spec.controller"), origin=origin
    )


def _parse_pod(body: Mapping[str, Any], meta: ObjectMeta, origin: Origin) -> ConfigObject:
    status = _mapping(body.get("status"), "status")
    return Pod(meta=meta, pod_ip=_string(status.get("podIP"), "status.podIP"), origin=origin)


_PARSERS: dict[str, Callable[[Mapping[str, Any], ObjectMeta, Origin], ConfigObject]] = {
    **{kind: _parse_istio(kind) for kind in SPEC_TYPES},
    "Service": _parse_service,
    "EndpointSlice": _parse_endpoint_slice,
    "Endpoints": _parse_endpoints,
    "Secret": _parse_secret,
    "Namespace": _parse_namespace,
    "Ingress": _parse_ingress,
    "IngressClass": _parse_ingress_class,
    "Pod": _parse_pod,
}


# --- field readers: each names the path of what is wrong --------------------------------


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FieldError(path, f"must be a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FieldError(path, f"must be a list, got {type(value).__name__}")
    return value


def _string(value: Any, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FieldError(path, f"must be a string, got {type(value).__name__}")
    return str(value)


def _string_map(value: Any, path: str) -> dict[str, str]:
    return {str(k): _string(v, f"{path}.{k}") for k, v in _mapping(value, path).items()}


def _port_number(value: Any, path: str, *, required: bool) -> int:
    if value is None:
        if required:
            raise FieldError(path, "is required")
        return 0
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(path, f"must be a port number, got {value!r}")
    if not 1 <= value <= 65535:
        raise FieldError(path, f"port {value} is out of range 1-65535")
    return value


def _endpoint_port(raw: Any, path: str) -> EndpointPort:
    port = _mapping(raw, path)
    return EndpointPort(
        port=_port_number(port.get("port"), f"{path}.port", required=True),
        name=_string(port.get("name"), f"{path}.name"),
        protocol=_string(port.get("protocol"), f"{path}.protocol") or "TCP",
        app_protocol=_string(port.get("appProtocol"), f"{path}.appProtocol"),
    )


def _object_ref(raw: Any, path: str, default_namespace: str) -> ObjectRef | None:
    if raw is None:
        return None
    ref = _mapping(raw, path)
    return ObjectRef(
        kind=_string(ref.get("kind"), f"{path}.kind"),
        name=_string(ref.get("name"), f"{path}.name"),
        namespace=_string(ref.get("namespace"), f"{path}.namespace") or default_namespace,
    )
