"""pilotfish.cli: the `pilotfish` command, run in-process (and once as the console script)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from pilotfish.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "httpbin-gateway"

SUBCOMMAND_FLAGS = {
    "serve": [
        "--config-dir",
        "--xds-address",
        "--debug-address",
        "--debounce-quiet",
        "--debounce-max",
    ],
    "bootstrap": [
        "--type",
        "--name",
        "--namespace",
        "--labels",
        "--ip",
        "--xds-address",
        "--admin-port",
        "--admin-socket",
        "--metadata",
        "--status-port",
        "--prometheus-port",
        "--delta",
        "--json",
    ],
    "translate": ["--config-dir", "--type", "--labels", "--namespace", "--name"],
    "validate": ["--config-dir"],
}


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # main() points structlog at the sys.stderr of the moment (capsys's): undo it after.
    yield
    structlog.reset_defaults()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse: --help, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_top_level_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in ("serve", "bootstrap", "translate", "validate", "--log-level", "--log-json"):
        assert word in out


@pytest.mark.parametrize("command", sorted(SUBCOMMAND_FLAGS))
def test_subcommand_help_mentions_its_flags(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert out.startswith(f"usage: pilotfish {command}")
    for flag in SUBCOMMAND_FLAGS[command]:
        assert flag in out, flag


def test_bootstrap_prints_istio_node_id_and_labels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "bootstrap",
        "--name",
        "ingress-0",
        "--namespace",
        "istio-system",
        "--labels",
        "istio=ingressgateway, app=gw",
        "--ip",
        "10.1.2.3",
        "--xds-address",
        "127.0.0.1:25010",
    )
    assert code == 0
    bootstrap = yaml.safe_load(out)
    node = bootstrap["node"]
    assert node["id"] == "router~10.1.2.3~ingress-0.istio-system~istio-system.svc.cluster.local"
    assert node["metadata"]["LABELS"] == {"istio": "ingressgateway", "app": "gw"}
    assert node["metadata"]["NAMESPACE"] == "istio-system"
    assert "25010" in out  # where the proxy finds pilotfish


def test_bootstrap_json_for_a_sidecar(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "bootstrap", "--type", "sidecar", "--name", "app-1", "--namespace", "shop", "--json"
    )
    assert code == 0
    bootstrap = json.loads(out)
    assert bootstrap["node"]["id"] == "sidecar~127.0.0.1~app-1.shop~shop.svc.cluster.local"
    assert bootstrap["node"]["metadata"]["LABELS"] == {}


def test_bootstrap_delta(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bootstrap", "--name=gw", "--namespace=ns", "--delta", "--json")
    assert code == 0
    assert json.loads(out)["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"


def test_bootstrap_for_a_sidecar_in_a_pod(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "bootstrap",
        "--type=sidecar",
        "--name=reviews-v2",
        "--namespace=bookinfo",
        "--labels=app=reviews,version=v2",
        "--ip=10.44.0.12",
        "--xds-address=unix:/run/pf/xds.sock",
        "--admin-socket=/run/pod/admin.sock",
        "--metadata=CLUSTER_ID=east,MESH_ID=m1",
        "--prometheus-port=0",
        "--json",
    )
    assert code == 0
    bootstrap = json.loads(out)
    metadata = bootstrap["node"]["metadata"]
    assert (metadata["CLUSTER_ID"], metadata["MESH_ID"]) == ("east", "m1")
    assert metadata["INTERCEPTION_MODE"] == "REDIRECT"
    assert metadata["ENVOY_STATUS_PORT"] == 15021
    assert "ENVOY_PROMETHEUS_PORT" not in metadata
    assert bootstrap["admin"]["address"] == {"pipe": {"path": "/run/pod/admin.sock"}}
    listeners = [item["name"] for item in bootstrap["static_resources"]["listeners"]]
    assert listeners == ["0.0.0.0_15021"]
    assert '"path": "/run/pf/xds.sock"' in out


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--metadata=NAME=x", "metadata NAME cannot be set directly"),
        ("--metadata=novalue", "'novalue' must be key=value"),
        ("--xds-address=unix:", "names no socket path"),
        ("--xds-address=pilotfish", "is not host:port"),
    ],
)
def test_bad_bootstrap_flags_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], flag: str, message: str
) -> None:
    code, _, err = run(capsys, "bootstrap", "--type=sidecar", "--name=a", "--namespace=b", flag)
    assert code == 2
    assert message in err


def test_bad_labels_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "bootstrap", "--name", "a", "--namespace", "b", "--labels", "novalue"
    )
    assert code == 2
    assert "'novalue' must be key=value" in err


def test_translate_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "translate",
        "--config-dir",
        str(EXAMPLE),
        "--labels",
        "istio=ingressgateway",
        "--namespace",
        "istio-system",
    )
    assert code == 0
    data: dict[str, Any] = yaml.safe_load(out)
    assert [listener["name"] for listener in data["listeners"]] == ["0.0.0.0_8080"]
    assert [route["name"] for route in data["routes"]] == ["http.8080"]
    (vhost,) = data["routes"][0]["virtual_hosts"]
    assert vhost["domains"] == ["httpbin.example.com"]
    assert [r["match"]["prefix"] for r in vhost["routes"]] == ["/status", "/delay"]
    assert [c["name"] for c in data["clusters"]] == [
        "outbound|8000||httpbin.default.svc.cluster.local",
        "outbound|80||istio-ingressgateway.istio-system.svc.cluster.local",
    ]
    assert data["status"] == []


def test_translate_for_a_proxy_no_gateway_selects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "translate", "--config-dir", str(EXAMPLE), "--labels", "istio=other")
    assert code == 0
    data = yaml.safe_load(out)
    assert data["listeners"] == []
    assert data["routes"] == []


def test_translate_for_a_sidecar_at_an_ip(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "vm.yaml").write_text(
        """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm, namespace: vms}
spec:
  hosts: [vm.internal]
  ports: [{number: 80, targetPort: 8080, name: http}]
  endpoints: [{address: 10.2.0.5}]
"""
    )
    common = ["translate", "--config-dir", str(tmp_path), "--type", "sidecar"]
    code, out, _ = run(capsys, *common, "--namespace", "vms", "--ip", "10.2.0.5")
    assert code == 0
    clusters = [c["name"] for c in yaml.safe_load(out)["clusters"]]
    assert "inbound|8080||" in clusters  # the entry's endpoint is this proxy
    code, out, _ = run(capsys, *common, "--namespace", "vms")
    assert "inbound|8080||" not in [c["name"] for c in yaml.safe_load(out)["clusters"]]


def test_validate_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", "--config-dir", str(EXAMPLE))
    assert code == 0
    assert json.loads(out) == []


BROKEN_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.example.com]
  http:
  - route: [{destination: {host: web}}]
    timeuot: 5s
"""


def test_validate_reports_a_broken_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "web.yaml").write_text(BROKEN_VS)
    code, out, _ = run(capsys, "validate", "--config-dir", str(tmp_path))
    assert code == 1
    report = json.loads(out)
    assert len(report) == 1
    (problem,) = report
    assert problem["file"] == str(Path("team") / "web.yaml")
    assert problem["field"] == "spec.http[0].timeuot"
    assert (problem["kind"], problem["namespace"], problem["name"]) == (
        "VirtualService",
        "default",
        "web",
    )
    assert problem["severity"] == "error"
    assert "timeuot" in problem["message"]


def test_validate_with_warnings_only_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for source in EXAMPLE.iterdir():
        (tmp_path / source.name).write_text(source.read_text())
    vs = (tmp_path / "gateway.yaml").read_text().replace("host: httpbin", "host: nowhere")
    (tmp_path / "gateway.yaml").write_text(vs)
    code, out, _ = run(capsys, "validate", "--config-dir", str(tmp_path))
    report = json.loads(out)
    assert [p["severity"] for p in report] == ["warning"]
    assert "nowhere.default.svc.cluster.local" in report[0]["message"]
    assert code == 0


@pytest.mark.parametrize("command", ["validate", "translate", "serve"])
def test_a_missing_config_dir_is_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    missing = tmp_path / "no-such-dir"
    # serve: ports 0, so that even a regression could not take the real ones
    ports = ["--xds-address", "127.0.0.1:0", "--debug-address", "127.0.0.1:0"]
    extra = ports if command == "serve" else []
    code, out, err = run(capsys, command, "--config-dir", str(missing), *extra)
    assert code == 2
    assert out == ""
    assert f"pilotfish: config directory {missing} does not exist" in err

    # and forgetting the flag altogether
    code, _, err = run(capsys, command)
    assert code == 2
    if command == "serve":  # serve reads a directory or Kubernetes
        assert "one of the arguments --config-dir --kubernetes is required" in err
    else:
        assert "the following arguments are required: --config-dir" in err


def test_serve_refuses_kubernetes_flags_with_a_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _out, err = run(
        capsys, "serve", "--config-dir", str(tmp_path), "--write-status", "--namespace", "a"
    )
    assert code == 2
    assert "--namespace, --write-status only apply with --kubernetes" in err


def test_the_console_script_runs() -> None:
    script = Path(sys.executable).parent / "pilotfish"
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pilotfish")
    for command in SUBCOMMAND_FLAGS:
        assert command in result.stdout


def test_serve_kubernetes_without_a_kubeconfig_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "kubeconfig"
    ports = ["--xds-address", "127.0.0.1:0", "--debug-address", "127.0.0.1:0"]
    code, _out, err = run(capsys, "serve", "--kubernetes", "--kubeconfig", str(missing), *ports)
    assert code == 2
    assert f"kubeconfig {missing} does not exist" in err
