"""The README's by-hand path, as separate processes: `pilotfish serve`, `pilotfish
bootstrap` into an Envoy, a request through the gateway; and `make demo`'s program."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testsupport.envoy import EnvoyProcess
from testsupport.http import request
from testsupport.ports import free_ports
from testsupport.upstreams import HttpbinServer
from testsupport.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
PILOTFISH = [sys.executable, "-m", "pilotfish.cli"]


def example_config(target: Path, gateway_port: int, httpbin_port: int) -> None:
    """examples/httpbin-gateway with the two ports that must be free here changed."""
    shutil.copytree(ROOT / "examples" / "httpbin-gateway", target)
    ingress = target / "ingressgateway.yaml"
    ingress.write_text(
        ingress.read_text().replace("targetPort: 8080", f"targetPort: {gateway_port}")
    )
    httpbin = target / "httpbin.yaml"
    text = httpbin.read_text()
    slice_part = text.index("kind: EndpointSlice")
    httpbin.write_text(
        text[:slice_part] + text[slice_part:].replace("port: 8000", f"port: {httpbin_port}")
    )


@pytest.fixture
def httpbin() -> Iterator[HttpbinServer]:
    with HttpbinServer() as server:
        yield server


def test_serve_bootstrap_envoy_curl(tmp_path: Path, httpbin: HttpbinServer) -> None:
    gateway_port, xds_port, debug_port = free_ports(3)
    config_dir = tmp_path / "config"
    example_config(config_dir, gateway_port, httpbin.port)
    log = (tmp_path / "pilotfish.log").open("wb")
    serve = subprocess.Popen(
        [*PILOTFISH, "serve", "--config-dir", str(config_dir),
         "--xds-address", f"127.0.0.1:{xds_port}", "--debug-address", f"127.0.0.1:{debug_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: request(f"http://127.0.0.1:{debug_port}/healthz/ready").status == 200,
            ignore=(OSError,),
            message=lambda: (tmp_path / "pilotfish.log").read_text(),
        )
        printed = subprocess.run(
            [*PILOTFISH, "bootstrap", "--type", "router", "--name", "ingress-0", "--namespace", "istio-system",
             "--labels", "istio=ingressgateway", "--xds-address", f"127.0.0.1:{xds_port}", "--admin-port", "0"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        with EnvoyProcess(yaml.safe_load(printed), name="cli-envoy") as envoy:
            envoy.wait_ready()
            url = f"http://127.0.0.1:{gateway_port}/status/418"
            teapot = request(url, headers={"Host": "httpbin.example.com"})
            assert teapot.status == 418 and "teapot" in teapot.text
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0, (tmp_path / "pilotfish.log").read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    logged = (tmp_path / "pilotfish.log").read_text()
    assert "pilotfish serving" in logged and "proxy connected" in logged


def start_serve(
    config_dir: Path, xds_port: int, debug_port: int, log: Path
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [*PILOTFISH, "serve", "--config-dir", str(config_dir),
         "--xds-address", f"127.0.0.1:{xds_port}", "--debug-address", f"127.0.0.1:{debug_port}"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until(
        lambda: request(f"http://127.0.0.1:{debug_port}/healthz/ready").status == 200,
        ignore=(OSError,),
        message=lambda: log.read_text(),
    )
    return process


def test_envoy_survives_a_control_plane_restart(tmp_path: Path, httpbin: HttpbinServer) -> None:
    """Envoy keeps its config while pilotfish is down, reconnects to the new process,
    and takes new versions from it (never one it already holds)."""
    gateway_port, xds_port, debug_port = free_ports(3)
    config_dir = tmp_path / "config"
    example_config(config_dir, gateway_port, httpbin.port)
    log = tmp_path / "pilotfish.log"
    host = {"Host": "httpbin.example.com"}
    url = f"http://127.0.0.1:{gateway_port}"
    first = start_serve(config_dir, xds_port, debug_port, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        options = ["--xds-address", f"127.0.0.1:{xds_port}", "--admin-port", "0"]
        printed = subprocess.run(
            [*PILOTFISH, "bootstrap", "--name", "ingress-0", "--namespace", "istio-system",
             "--labels", "istio=ingressgateway", *options],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        with EnvoyProcess(yaml.safe_load(printed), name="restart-envoy") as envoy:
            envoy.wait_ready()
            assert request(f"{url}/status/418", headers=host).status == 418
            old_lds = envoy.text_readouts()["listener_manager.lds.version_text"]

            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=15) == 0
            # Control plane gone: Envoy still routes with what it has.
            assert request(f"{url}/status/418", headers=host).status == 418

            gateway = config_dir / "gateway.yaml"
            gateway.write_text(gateway.read_text().replace("prefix: /delay", "prefix: /headers"))
            second = start_serve(config_dir, xds_port, debug_port, log)
            envoy.wait_for(
                lambda: request(f"{url}/headers", headers=host).status == 200,
                "Envoy never got the new config from the restarted pilotfish",
                timeout=30,
            )

            # The restarted server's LDS version is new, though the listener is the same.
            def lds_version_changed() -> str | None:
                version = envoy.text_readouts()["listener_manager.lds.version_text"]
                return version if version != old_lds else None

            new_lds = envoy.wait_for(
                lds_version_changed, "Envoy never took an LDS version from the restarted pilotfish"
            )
            assert new_lds.split("/")[0] != old_lds.split("/")[0]  # a new boot stamp
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def test_serve_refuses_a_missing_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PILOTFISH, "serve", "--config-dir", str(tmp_path / "nope"), "--xds-address", "127.0.0.1:0",
         "--debug-address", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_make_demo_program_runs() -> None:
    """`make demo` on these fixed ports (README's); the CI machine has them free."""
    result = subprocess.run(
        [sys.executable, "-m", "pilotfish.demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HTTP 418" in result.stdout
    assert result.stdout.count("HTTP 200") >= 2  # /status/200, then /headers after the edit
    assert "HTTP 404" in result.stdout
    assert "SYNCED" in result.stdout
