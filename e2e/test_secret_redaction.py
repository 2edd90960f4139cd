"""No key material leaves pilotfish as text: not in its logs (at debug level), not on
/debug/config_dump or /debug/config_status, not in `pilotfish translate` or `validate`.

Real processes, as a user runs them: `pilotfish serve` with its log captured, an Envoy
that takes the secrets over SDS (so they were really served), and the CLI. One Secret is
broken, so that the error paths (which name Secrets) are exercised too.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from testsupport.certs import CertKey, issue, make_ca
from testsupport.envoy import EnvoyProcess
from testsupport.http import request
from testsupport.ports import free_ports
from testsupport.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "secure-gateway"
PILOTFISH = [sys.executable, "-m", "pilotfish.cli"]


def secret(name: str, cert: CertKey, key: CertKey, ca: CertKey | None = None) -> dict[str, Any]:
    data = {"tls.crt": cert.cert_pem, "tls.key": key.key_pem}
    if ca is not None:
        data["ca.crt"] = ca.cert_pem
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def fragments(pem: bytes) -> list[str]:
    """Ways a PEM could show up as text: its base64 lines, or all of it base64-encoded
    (as in a Secret's data, or as protobuf bytes in JSON)."""
    lines = [line.decode() for line in pem.splitlines()[1:-1]]
    return [*(line[:32] for line in lines if len(line) >= 32), base64.b64encode(pem).decode()[:32]]


def make_config(config_dir: Path, gateway_ports: list[int]) -> list[CertKey]:
    shutil.copytree(
        EXAMPLE,
        config_dir,
        ignore=shutil.ignore_patterns("*.sh", ".*", "certs", "credentials.yaml"),
    )
    ingress = config_dir / "ingressgateway.yaml"
    docs = list(yaml.safe_load_all(ingress.read_text()))
    for port, target in zip(docs[0]["spec"]["ports"], gateway_ports, strict=True):
        port["targetPort"] = target
    ingress.write_text(yaml.safe_dump_all(docs))
    ca = make_ca("example.com")
    httpbin = issue(ca, ["httpbin.example.com"])
    helloworld = issue(ca, ["helloworld-v1.example.com"])
    mtls = issue(ca, ["mtls.example.com"])
    secrets = [
        secret("httpbin-credential", httpbin, httpbin),
        secret("helloworld-credential", helloworld, helloworld),
        secret("mtls-credential", mtls, mtls, ca=ca),
        secret("broken-credential", httpbin, helloworld),  # the key is not the cert's
    ]
    broken_gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "broken", "namespace": "default"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 443, "name": "https-broken", "protocol": "HTTPS"},
                    "tls": {"mode": "SIMPLE", "credentialName": "broken-credential"},
                    "hosts": ["broken.example.com"],
                }
            ],
        },
    }
    (config_dir / "credentials.yaml").write_text(yaml.safe_dump_all([*secrets, broken_gateway]))
    return [httpbin, helloworld, mtls, ca]


def test_no_key_material_in_logs_debug_endpoints_or_cli(tmp_path: Path) -> None:
    *gateway_ports, xds_port, debug_port = free_ports(5)
    config_dir = tmp_path / "config"
    identities = make_config(config_dir, gateway_ports)
    log_path = tmp_path / "pilotfish.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [*PILOTFISH, "--log-level", "debug", "serve", "--config-dir", str(config_dir),
             "--xds-address", f"127.0.0.1:{xds_port}", "--debug-address", f"127.0.0.1:{debug_port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    texts: dict[str, str] = {}
    try:
        debug = f"http://127.0.0.1:{debug_port}"
        wait_until(
            lambda: request(f"{debug}/healthz/ready").status == 200,
            ignore=(OSError,),
            message=log_path.read_text,
        )
        printed = subprocess.run(
            [*PILOTFISH, "bootstrap", "--type", "router", "--name", "ingress-0", "--namespace", "istio-system",
             "--labels", "istio=ingressgateway", "--xds-address", f"127.0.0.1:{xds_port}", "--admin-port", "0"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        bootstrap = yaml.safe_load(printed)
        with EnvoyProcess(bootstrap, name="redaction-envoy") as envoy:
            envoy.wait_ready()
            served = envoy.wait_for(
                lambda: envoy.dynamic_secrets().keys() >= {"kubernetes://httpbin-credential"},
                "Envoy never got the SDS secrets",
            )
            assert served
            # A config change, so that translation problems are logged (pilotfish logs
            # them on a config change, not when a proxy connects).
            credentials = config_dir / "credentials.yaml"
            credentials.write_text(credentials.read_text().replace("broken.", "broken-too."))
            wait_until(
                lambda: "broken-credential" in log_path.read_text(),
                message="the broken Secret was never reported in the log",
            )
            node = bootstrap["node"]["id"]
            texts["config_dump"] = request(f"{debug}/debug/config_dump?proxy={node}").text
            texts["config_status"] = request(f"{debug}/debug/config_status").text
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=15) == 0, log_path.read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
    texts["log"] = log_path.read_text()
    for command in ("translate", "validate"):
        args = ["--labels", "istio=ingressgateway"] if command == "translate" else []
        done = subprocess.run(
            [*PILOTFISH, "--log-level", "debug", command, "--config-dir", str(config_dir), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        texts[command] = done.stdout + done.stderr

    # Not vacuous: the secrets were served and shown redacted, and the bad one reported.
    assert "type=sds" in texts["log"]
    assert "broken-credential" in texts["log"] and "broken-credential" in texts["validate"]
    assert "[redacted]" in texts["config_dump"] and "[redacted]" in texts["translate"]
    for identity in identities:
        for pem in (identity.key_pem, identity.cert_pem):
            for fragment in fragments(pem):
                for where, text in texts.items():
                    assert fragment not in text, f"key material in {where}"
