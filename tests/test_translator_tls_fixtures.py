"""Shared pieces for the secure-gateway unit tests (no tests here): manifests in, IR and
problems out."""

from __future__ import annotations

import base64

import yaml

from pilotfish.model.configset import ConfigSet, build_config_set
from pilotfish.model.documents import parse_manifest_text
from pilotfish.model.errors import ConfigError
from pilotfish.node_id import NodeId
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import Translation, translate
from testsupport.certs import CertKey, issue, make_ca

CA = make_ca("example.com")
HTTPBIN = issue(CA, ["httpbin.example.com"])
HELLO = issue(CA, ["helloworld-v1.example.com"])

GATEWAY_PROXY = Proxy.from_node(
    str(NodeId.for_pod("router", "10.0.0.1", "ingress-0", "istio-system")),
    {"LABELS": {"istio": "ingressgateway"}, "NAMESPACE": "istio-system"},
)


def secret_yaml(
    name: str, identity: CertKey, ca: CertKey | None = None, namespace: str = "istio-system"
) -> str:
    data = {"tls.crt": identity.cert_pem, "tls.key": identity.key_pem}
    if ca is not None:
        data["ca.crt"] = ca.cert_pem
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


SECRETS = "---\n".join(
    [
        secret_yaml("httpbin-credential", HTTPBIN),
        secret_yaml("helloworld-credential", HELLO),
        secret_yaml("mutual-credential", HTTPBIN, ca=CA),
    ]
)

SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: my-nginx, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: nginx-v2, namespace: default}
spec:
  ports: [{name: https, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo, namespace: default}
spec:
  ports: [{name: tcp, port: 9000}, {name: tcp-other, port: 9001}]
---
apiVersion: v1
kind: Service
metadata: {name: single, namespace: default}
spec:
  ports: [{name: tcp, port: 7000}]
"""


def gateway(servers: str, name: str = "gw", namespace: str = "default") -> str:
    """A Gateway selecting the ingress proxy; `servers` is the YAML list under servers:."""
    indented = "\n".join(f"  {line}" for line in servers.strip("\n").splitlines())
    return (
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{indented}\n"
    )


def config(*docs: str, secrets: str = SECRETS) -> ConfigSet:
    text = "\n---\n".join([SERVICES, secrets, *docs])
    built = build_config_set([parse_manifest_text(text, "config.yaml")])
    assert not [e for e in built.errors if e.severity == "error"], [
        e.describe() for e in built.errors
    ]
    return built


def run(*docs: str, secrets: str = SECRETS) -> Translation:
    return translate(config(*docs, secrets=secrets), GATEWAY_PROXY)


def problems(translation: Translation) -> list[tuple[str | None, str | None, str]]:
    """(object name, field, message) of each problem, for compact assertions."""
    return [(e.name, e.field, e.message) for e in translation.status]


def errors(translation: Translation) -> list[ConfigError]:
    return [e for e in translation.status if e.severity == "error"]
