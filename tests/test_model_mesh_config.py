"""MeshConfig (`--mesh-config`): what loads, what is refused and why, and what it changes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.cli import main
from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.mesh_config import (
    MeshConfigError,
    MeshSettings,
    load_mesh_config,
    parse_mesh_config,
)
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from testsupport.http import request
from testsupport.pilotfish import InProcessPilotfish

GATEWAY = Proxy(
    "router",
    "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local",
    "10.0.0.1",
    "gw",
    "istio-system",
    {"istio": "ingressgateway"},
)

# The shape of the `mesh` key of an `istio` ConfigMap as an Istio install writes it.
INSTALLED_MESH = """\
accessLogFile: /dev/stdout
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  tracing: {zipkin: {address: zipkin.istio-system:9411}}
defaultProviders: {metrics: [prometheus]}
enablePrometheusMerge: true
rootNamespace: istio-system
trustDomain: cluster.local
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""

CONFIG = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: web}}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{name: http, port: 80}]}
"""


def parse(text: str) -> tuple[MeshSettings, list[str]]:
    settings, problems = parse_mesh_config(yaml.safe_load(text), "mesh.yaml")
    return settings, [p.describe() for p in problems]


def refusal(text: str) -> list[tuple[str | None, str]]:
    with pytest.raises(MeshConfigError) as caught:
        parse_mesh_config(yaml.safe_load(text), "mesh.yaml")
    return [(e.field, e.message) for e in caught.value.errors]


def test_nothing_set_is_istios_defaults() -> None:
    settings, problems = parse("")
    assert (settings.outbound_policy, settings.root_namespace) == ("ALLOW_ANY", "istio-system")
    assert (settings.connect_timeout_ms, settings.default_http_retry) == (10_000, None)
    assert problems == []


def test_an_installed_mesh_config_loads_and_names_what_is_not_acted_on_once() -> None:
    settings, problems = parse(INSTALLED_MESH)
    assert settings.outbound_policy == "REGISTRY_ONLY"
    assert problems == [
        "mesh.yaml MeshConfig: pilotfish does not act on these MeshConfig fields: "
        "accessLogFile, defaultConfig, defaultProviders, enablePrometheusMerge, trustDomain"
    ]


def test_the_istio_config_map_itself_loads(tmp_path: Path) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "rootNamespace: mesh-root\nconnectTimeout: 2.5s\n", "meshNetworks": ""},
    }
    path = tmp_path / "istio.yaml"
    path.write_text(yaml.safe_dump(config_map))
    settings, problems = load_mesh_config(path)
    assert (settings.root_namespace, settings.connect_timeout_ms) == ("mesh-root", 2500)
    assert problems == []


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("outboundTrafficPolicy: {mode: ALLOW_ANY}", "ALLOW_ANY"),
        ("outboundTrafficPolicy: {mode: REGISTRY_ONLY}", "REGISTRY_ONLY"),
        # Istio merges the file over its defaults: an empty policy keeps ALLOW_ANY.
        ("outboundTrafficPolicy: {}", "ALLOW_ANY"),
    ],
)
def test_outbound_traffic_policy(text: str, policy: str) -> None:
    assert parse(text)[0].outbound_policy == policy


@pytest.mark.parametrize(
    ("text", "policy"),
    [
        ("", "PASSTHROUGH"),  # Istio's default: to the pod's IP
        ("inboundTrafficPolicy: {mode: PASSTHROUGH}", "PASSTHROUGH"),
        ("inboundTrafficPolicy: {mode: LOCALHOST}", "LOCALHOST"),
        ("inboundTrafficPolicy: {}", "PASSTHROUGH"),
    ],
)
def test_inbound_traffic_policy(text: str, policy: str) -> None:
    settings, problems = parse(text)
    assert (settings.inbound_policy, problems) == (policy, [])


def test_dynamic_dns_mode_is_reported_and_allow_any_applies() -> None:
    settings, problems = parse("outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}")
    assert settings.outbound_policy == "ALLOW_ANY"
    assert problems == [
        "mesh.yaml MeshConfig outboundTrafficPolicy.mode: "
        "ALLOW_ANY_DYNAMIC_DNS is not supported: ALLOW_ANY applies"
    ]


def test_a_key_pilotfish_does_not_know_is_a_warning_naming_it() -> None:
    settings, problems = parse("rootNamspace: mesh-root\ndefaultInboundHttpRetryPolicy: {}\n")
    assert settings.root_namespace == "istio-system"  # the typo did not set it
    assert problems == [
        "mesh.yaml MeshConfig defaultInboundHttpRetryPolicy: 'defaultInboundHttpRetryPolicy' is "
        "not a MeshConfig field pilotfish knows (a typo, or a newer Istio's field?): ignored",
        "mesh.yaml MeshConfig rootNamspace: 'rootNamspace' is not a MeshConfig field pilotfish "
        "knows (a typo, or a newer Istio's field?): ignored",
    ]


def test_removed_istio_fields_are_a_warning() -> None:
    _, problems = parse("disablePolicyChecks: true\nrootNamespace: x\n")
    assert problems == [
        "mesh.yaml MeshConfig: fields Istio has removed, ignored: disablePolicyChecks"
    ]


@pytest.mark.parametrize(
    ("text", "field", "says"),
    [
        ("connectTimeout: fast", "connectTimeout", "fast"),
        ("connectTimeout: 0s", "connectTimeout", "must be positive"),
        ("rootNamespace: [a, b]", "rootNamespace", "string"),
        ("outboundTrafficPolicy: {mode: OPEN}", "outboundTrafficPolicy.mode", "OPEN"),
        ("inboundTrafficPolicy: {mode: LOOPBACK}", "inboundTrafficPolicy.mode", "LOOPBACK"),
        ("defaultHttpRetryPolicy: {attempts: many}", "defaultHttpRetryPolicy.attempts", "many"),
        ("defaultHttpRetryPolicy: {atempts: 3}", "defaultHttpRetryPolicy.atempts", "atempts"),
    ],
)
def test_a_wrong_field_refuses_the_file_naming_it(text: str, field: str, says: str) -> None:
    ((where, message),) = refusal(text)
    assert where == field
    assert says in message


def test_not_a_mapping_is_refused() -> None:
    assert refusal("[1, 2]") == [(None, "a mesh config is a mapping, got list")]


def config(*mesh_lines: str) -> ConfigSet:
    parsed = build_config_set([parse_manifest_text(CONFIG, "config.yaml")])
    assert parsed.errors == ()
    settings, problems = parse_mesh_config(yaml.safe_load("\n".join(mesh_lines)), "mesh.yaml")
    return with_mesh(parsed, settings, problems)


def routes_and_clusters(config: ConfigSet) -> tuple[Any, Any]:
    translation = translate(config, GATEWAY)
    (route,) = [r for v in translation.config.route_configs[0].virtual_hosts for r in v.routes]
    (cluster,) = [
        c for c in translation.config.clusters if c.name.endswith("web.default.svc.cluster.local")
    ]
    return route, cluster


def test_connect_timeout_is_every_clusters_default() -> None:
    _, cluster = routes_and_clusters(config("connectTimeout: 250ms"))
    assert cluster.connect_timeout_ms == 250
    _, default = routes_and_clusters(config())
    assert default.connect_timeout_ms == 10_000


def test_default_http_retry_policy_applies_to_routes_without_retries() -> None:
    route, _ = routes_and_clusters(
        config("defaultHttpRetryPolicy: {attempts: 5, retryOn: 'gateway-error,503'}")
    )
    assert (route.retry.attempts, route.retry.retry_on) == (
        5,
        "gateway-error,retriable-status-codes",
    )
    assert route.retry.retriable_status_codes == (503,)
    off, _ = routes_and_clusters(config("defaultHttpRetryPolicy: {attempts: 0}"))
    assert off.retry is None


def test_root_namespace_holds_the_mesh_wide_destination_rules() -> None:
    rule = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web, namespace: mesh-root}
spec: {host: web.default.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
"""
    parsed = build_config_set([parse_manifest_text(CONFIG + "---\n" + rule, "config.yaml")])
    default_root = translate(parsed, GATEWAY)
    moved = translate(replace(parsed, mesh=MeshSettings(root_namespace="mesh-root")), GATEWAY)

    def lb(translation: Any) -> str:
        (cluster,) = [c for c in translation.config.clusters if "web" in c.name]
        return str(cluster.lb_policy)

    assert lb(default_root) == "LEAST_REQUEST"
    assert lb(moved) == "RANDOM"


def test_translate_and_validate_take_the_mesh_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(CONFIG)
    (tmp_path / "mesh.yaml").write_text("connectTimeout: 3s\naccessLogFile: /dev/stdout\n")
    args = ["--config-dir", str(tmp_path / "config"), "--mesh-config", str(tmp_path / "mesh.yaml")]
    assert main(["translate", *args, "--labels", "istio=ingressgateway"]) == 0
    assert "connect_timeout: 3s" in capsys.readouterr().out
    assert main(["validate", *args]) == 0
    (warning,) = json.loads(capsys.readouterr().out)
    assert warning["kind"] == "MeshConfig" and "accessLogFile" in warning["message"]


def test_a_bad_mesh_config_is_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mesh.yaml").write_text("connectTimeout: soon\n")
    code = main(
        ["validate", "--config-dir", str(tmp_path), "--mesh-config", str(tmp_path / "mesh.yaml")]
    )
    assert code == 2
    assert "--mesh-config: " in capsys.readouterr().err
    assert (
        main(["serve", "--config-dir", str(tmp_path), "--mesh-config", str(tmp_path / "mesh.yaml")])
        == 2
    )
    err = capsys.readouterr().err
    assert "MeshConfig connectTimeout" in err and "soon" in err


def test_serve_reports_the_mesh_config_warnings(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(CONFIG)
    (tmp_path / "mesh.yaml").write_text(INSTALLED_MESH)
    with InProcessPilotfish(tmp_path / "config", mesh_config=tmp_path / "mesh.yaml") as server:
        assert server.server is not None
        status = json.loads(
            request(f"http://127.0.0.1:{server.server.debug_port}/debug/config_status").body
        )
    assert [(s["kind"], s["severity"]) for s in status] == [("MeshConfig", "warning")]
    assert "trustDomain" in status[0]["message"]
