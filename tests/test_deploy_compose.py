"""docker-compose.yaml: the demo's structure, checked without a Docker engine.

What can be checked here is: the services, images, ports, network and fixed addresses
agree with each other and with examples/compose (the EndpointSlice, the gateway Service,
the node's IP); every host path mounted exists (compose would create a missing one as an
empty directory, and the demo would start with no config); the committed Envoy bootstrap
is exactly what `pilotfish bootstrap` prints and Envoy accepts it with the flags compose
gives it; the config passes `pilotfish validate`; and every pilotfish flag exists.
The file is checked against the Compose Specification (compose-spec), as `docker
compose config` would.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from testsupport.envoy import envoy_binary, validate_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
EXAMPLE = ROOT / "examples" / "httpbin-gateway"
COMPOSE_EXAMPLE = ROOT / "examples" / "compose"
BOOTSTRAP = COMPOSE_EXAMPLE / "envoy-bootstrap.yaml"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def flag_value(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def fixed_ip(name: str) -> str:
    address: str = service(name)["networks"]["mesh"]["ipv4_address"]
    return address


def bind_mounts(name: str) -> list[tuple[Path, str, bool]]:
    """(host path, container path, read-only) of each short-syntax bind mount."""
    mounts = []
    for volume in service(name).get("volumes", []):
        host, container, *options = volume.split(":")
        assert host.startswith("./"), f"{volume}: a bind mount relative to the repository"
        mounts.append((ROOT / host, container, options == ["ro"]))
    return mounts


def published(name: str) -> dict[int, tuple[str, int]]:
    """container port -> (host IP or "", host port) for each `ports:` entry."""
    ports = {}
    for entry in service(name).get("ports", []):
        *host_ip, host_port, container_port = str(entry).split(":")
        ports[int(container_port)] = (host_ip[0] if host_ip else "", int(host_port))
    return ports


def manifests(directory: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def find(directory: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = (
        d
        for d in manifests(directory)
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    )
    return found


def pilotfish(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pilotfish.cli", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )


def test_services_and_images() -> None:
    services = compose()["services"]
    assert set(services) == {"httpbin", "pilotfish", "ingressgateway"}
    assert services["httpbin"]["image"].startswith(("kennethreitz/httpbin", "mccutchen/go-httpbin"))
    assert services["ingressgateway"]["image"] == "envoyproxy/envoy:v1.40-latest"
    # pilotfish is built from this repository's Dockerfile, and tagged as deploy/ uses it.
    assert services["pilotfish"]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()
    assert services["pilotfish"]["image"] == "pilotfish:latest"


def test_every_mounted_host_path_exists() -> None:
    mounts = [m for name in compose()["services"] for m in bind_mounts(name)]
    assert mounts
    for host, _, read_only in mounts:
        assert host.exists(), host
        assert read_only, f"{host}: nothing in the demo writes to the host"


def test_pilotfish_serves_the_mounted_config_with_flags_it_has() -> None:
    command = service("pilotfish")["command"]
    assert command[0] == "serve"
    help_text = pilotfish("serve", "--help").stdout
    known = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", help_text))
    assert {a for a in command if a.startswith("--")} <= known
    ((host, container, _),) = bind_mounts("pilotfish")
    assert flag_value(command, "--config-dir") == container
    assert host == COMPOSE_EXAMPLE / "config"
    # Reachable from the gateway's container, not only from its own loopback.
    assert flag_value(command, "--xds-address").startswith("0.0.0.0:")
    assert flag_value(command, "--debug-address").startswith("0.0.0.0:")


def test_pilotfish_healthcheck_asks_the_readiness_path() -> None:
    command = service("pilotfish")["command"]
    check = service("pilotfish")["healthcheck"]
    test = check["test"]
    assert test[0] == "CMD"
    url = f"http://127.0.0.1:{port_of(flag_value(command, '--debug-address'))}/healthz/ready"
    assert url in test[-1]
    # The healthcheck runs in the pilotfish image, which has Python but no curl: the
    # command must at least be valid Python.
    assert test[1:3] == ["python", "-c"]
    compile(test[3], "healthcheck", "exec")
    assert check["retries"] >= 1


def test_gateway_waits_for_a_healthy_pilotfish() -> None:
    depends = service("ingressgateway")["depends_on"]
    assert depends["pilotfish"]["condition"] == "service_healthy"
    assert "httpbin" in depends


def test_network_and_fixed_addresses() -> None:
    networks = compose()["networks"]
    (subnet,) = (ipaddress.ip_network(c["subnet"]) for c in networks["mesh"]["ipam"]["config"])
    addresses = {
        name: ipaddress.ip_address(fixed_ip(name)) for name in ("httpbin", "ingressgateway")
    }
    assert all(address in subnet for address in addresses.values())
    assert len(set(addresses.values())) == len(addresses)
    for name in compose()["services"]:
        assert "mesh" in service(name)["networks"], name


def test_endpointslice_points_at_the_httpbin_container() -> None:
    slice_ = find(COMPOSE_EXAMPLE / "config", "EndpointSlice")
    (endpoint,) = slice_["endpoints"]
    assert endpoint["addresses"] == [fixed_ip("httpbin")]
    (port,) = slice_["ports"]
    assert port["port"] == int(service("httpbin")["environment"]["PORT"])


def test_compose_config_is_the_walkthrough_but_for_the_endpoint() -> None:
    """examples/compose/config is a copy of examples/httpbin-gateway: keep them in step."""
    compose_docs = manifests(COMPOSE_EXAMPLE / "config")
    walkthrough = manifests(EXAMPLE)

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    def without_slices(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        return {key(d): d for d in docs if d["kind"] != "EndpointSlice"}

    assert without_slices(compose_docs) == without_slices(walkthrough)
    original = find(EXAMPLE, "EndpointSlice")
    ours = find(COMPOSE_EXAMPLE / "config", "EndpointSlice")
    for field in ("addressType", "ports"):
        assert ours[field] == original[field]
    assert ours["metadata"]["labels"] == original["metadata"]["labels"]


def test_gateway_publishes_the_port_pilotfish_puts_the_listener_on() -> None:
    gateway_service = find(COMPOSE_EXAMPLE / "config", "Service", "istio-ingressgateway")
    (http,) = (p for p in gateway_service["spec"]["ports"] if p["port"] == 80)
    ports = published("ingressgateway")
    assert ports[http["targetPort"]] == ("", 8080)
    # The admin API is unauthenticated: the host's loopback only.
    assert ports[15000] == ("127.0.0.1", 15000)


def test_config_passes_pilotfish_validate() -> None:
    done = pilotfish("validate", "--config-dir", str(COMPOSE_EXAMPLE / "config"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert yaml.safe_load(done.stdout) == []


def bootstrap_argv() -> list[str]:
    """The `pilotfish bootstrap` arguments the committed file must have been made with."""
    xds_port = port_of(flag_value(service("pilotfish")["command"], "--xds-address"))
    admin_port = next(port for port, (ip, _) in published("ingressgateway").items() if ip)
    return [
        "bootstrap",
        "--type", "router",
        "--name", "ingress-0",
        "--namespace", "istio-system",
        "--labels", "istio=ingressgateway",
        "--ip", fixed_ip("ingressgateway"),
        "--xds-address", f"pilotfish:{xds_port}",
        "--admin-port", str(admin_port),
    ]  # fmt: skip


def test_committed_bootstrap_is_what_pilotfish_bootstrap_prints() -> None:
    done = pilotfish(*bootstrap_argv())
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(BOOTSTRAP.read_text()) == yaml.safe_load(done.stdout), (
        "regenerate: python -m pilotfish.cli " + " ".join(bootstrap_argv()) + " > " + str(BOOTSTRAP)
    )
    # The mounted file is the one Envoy is told to read.
    ((host, container, _),) = bind_mounts("ingressgateway")
    assert host == BOOTSTRAP
    assert flag_value(service("ingressgateway")["command"], "-c") == container


def test_bootstrap_selects_as_the_gateway_expects() -> None:
    bootstrap = yaml.safe_load(BOOTSTRAP.read_text())
    gateway = find(COMPOSE_EXAMPLE / "config", "Gateway")
    assert gateway["spec"]["selector"].items() <= bootstrap["node"]["metadata"]["LABELS"].items()
    (cluster,) = bootstrap["static_resources"]["clusters"]
    # A name, re-resolved by Envoy through Docker's DNS.
    assert cluster["type"] == "STRICT_DNS"


def test_envoy_accepts_the_bootstrap() -> None:
    # The xDS cluster names `pilotfish`, which does not resolve here: validation does not
    # resolve names (a STRICT_DNS cluster resolves at run time), so it still passes.
    validate_config(yaml.safe_load(BOOTSTRAP.read_text()))


def test_envoy_accepts_the_bootstrap_with_the_compose_flags() -> None:
    command = list(service("ingressgateway")["command"])
    assert command[0] == "envoy"
    args = command[1:]
    with tempfile.TemporaryDirectory(prefix="compose-envoy-") as tmp:
        path = Path(tmp) / "bootstrap.yaml"
        shutil.copy(BOOTSTRAP, path)
        args[args.index("-c") + 1] = str(path)
        done = subprocess.run(
            [envoy_binary(), "--mode", "validate", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    # What --config-yaml overrides: the admin address only, so the published port
    # reaches it; the port stays the bootstrap's.
    override = yaml.safe_load(flag_value(command, "--config-yaml"))
    assert override == {"admin": {"address": {"socket_address": {"address": "0.0.0.0"}}}}


def test_the_file_is_valid_against_the_compose_specification() -> None:
    """What `docker compose config` checks, without a Docker engine: the file parses
    strictly as the Compose Specification (unknown keys, wrong types and a missing
    `services` are refused), by compose-spec's Rust implementation of it."""
    parsed = PyCompose.from_yaml(COMPOSE_FILE.read_text())
    assert sorted(parsed.service_names()) == sorted(compose()["services"])


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (("services:", "servics:"), "services"),
        (("    image:", "    imag:"), "imag"),
    ],
)
def test_the_specification_check_can_fail(change: tuple[str, str], complaint: str) -> None:
    broken = COMPOSE_FILE.read_text().replace(*change, 1)
    with pytest.raises(ValueError, match=complaint):
        PyCompose.from_yaml(broken)
