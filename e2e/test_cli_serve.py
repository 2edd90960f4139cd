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
