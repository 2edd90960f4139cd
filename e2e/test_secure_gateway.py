"""Istio's secure gateway walkthroughs against pilotfish, end to end, with real TLS.

One pilotfish (in-process, real gRPC and HTTP ports) and one real Envoy serve the module.
The config is examples/secure-gateway with its ports changed (the gateway Service's
targetPorts are free ports; the backends' endpoints are where this module's upstreams
listen), two servers the example leaves out (TLS terminated then TCP, and
AUTO_PASSTHROUGH), and Secrets made here with `cryptography` instead of
make-credentials.sh. Clients are Python's `ssl`, connecting to 127.0.0.1 with the
walkthrough's host names as SNI (curl's --resolve).
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from pilotfish.bootstrap import XDS_PROTOCOLS, BootstrapOptions, render_bootstrap
from testsupport.certs import CertKey, issue, make_ca
from testsupport.envoy import EnvoyProcess
from testsupport.http import Response, request
from testsupport.pilotfish import InProcessPilotfish
from testsupport.ports import free_ports
from testsupport.stream_upstreams import TcpEchoServer, TlsHttpServer
from testsupport.tls import client_context, common_name, connect, exchange, peer_certificate
from testsupport.upstreams import EchoHttpServer, HttpbinServer
from testsupport.wait import wait_until

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "secure-gateway"
LOCALHOST = "127.0.0.1"
TCP_OVER_TLS = "tcp.example.com"
# The SNI an AUTO_PASSTHROUGH client sets to reach my-nginx's port 443.
NGINX_SNI_DNAT = "outbound_.443_._.my-nginx.default.svc.cluster.local"


def load_docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]


def secret(name: str, data: dict[str, bytes], tls: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"},
        "type": "kubernetes.io/tls" if tls else "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


@dataclass
class Pki:
    ca: CertKey  # example.com: signs the gateway's certificates and the client's
    httpbin: CertKey
    helloworld: CertKey
    mtls: CertKey
    tcp: CertKey
    client: CertKey
    nginx_ca: CertKey  # the upstream's own CA: the gateway never sees its key
    nginx: CertKey

    @classmethod
    def make(cls) -> Pki:
        ca, nginx_ca = make_ca("example.com"), make_ca("nginx CA")
        return cls(
            ca=ca,
            httpbin=issue(ca, ["httpbin.example.com"]),
            helloworld=issue(ca, ["helloworld-v1.example.com"]),
            mtls=issue(ca, ["mtls.example.com"]),
            tcp=issue(ca, [TCP_OVER_TLS]),
            client=issue(ca, ["client.example.com"], client=True),
            nginx_ca=nginx_ca,
            nginx=issue(nginx_ca, ["nginx.example.com"]),
        )

    def secrets(self, httpbin: CertKey | None = None) -> list[dict[str, Any]]:
        httpbin = httpbin or self.httpbin

        def pair(identity: CertKey) -> dict[str, bytes]:
            return {"tls.crt": identity.cert_pem, "tls.key": identity.key_pem}

        return [
            secret("httpbin-credential", pair(httpbin)),
            secret("helloworld-credential", pair(self.helloworld)),
            secret("mtls-credential", {**pair(self.mtls), "ca.crt": self.ca.cert_pem}, tls=False),
            secret("tcp-credential", pair(self.tcp)),
        ]


@dataclass
class Ports:
    http: int
    https: int
    tcp: int
    tls: int
    auto: int


class World:
    """The module's running processes, and the config files pilotfish reads."""

    def __init__(self, config_dir: Path, ports: Ports, pki: Pki) -> None:
        self.config_dir = config_dir
        self.ports = ports
        self.pki = pki
        self.upstream_ports: dict[str, int] = {}
        self.pilotfish: InProcessPilotfish
        self.envoy: EnvoyProcess
        self.node_id = ""

    # -- config ----------------------------------------------------------------------

    def base_files(self) -> dict[str, list[dict[str, Any]]]:
        ingress = load_docs("ingressgateway.yaml")
        targets = {80: self.ports.http, 443: self.ports.https, 31400: self.ports.tcp}
        for port in ingress[0]["spec"]["ports"]:
            port["targetPort"] = targets[port["port"]]
        ingress[0]["spec"]["ports"] += [
            {"name": "tls", "port": 9443, "targetPort": self.ports.tls},
            {"name": "tls-auto", "port": 15443, "targetPort": self.ports.auto},
        ]
        backends = load_docs("backends.yaml")
        for doc in backends:
            if doc["kind"] == "EndpointSlice":
                service = doc["metadata"]["labels"]["kubernetes.io/service-name"]
                doc["ports"][0]["port"] = self.upstream_ports[service]
        gateways = [
            *load_docs("gateway.yaml"),
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "tls-gateway", "namespace": "default"},
                "spec": {
                    "selector": {"istio": "ingressgateway"},
                    "servers": [
                        {
                            "port": {"number": 9443, "name": "tls", "protocol": "TLS"},
                            "tls": {"mode": "SIMPLE", "credentialName": "tcp-credential"},
                            "hosts": [TCP_OVER_TLS],
                        }
                    ],
                },
            },
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "cross-network-gateway", "namespace": "istio-system"},
                "spec": {
                    "selector": {"istio": "ingressgateway"},
                    "servers": [
                        {
                            "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
                            "tls": {"mode": "AUTO_PASSTHROUGH"},
                            "hosts": ["*.local"],
                        }
                    ],
                },
            },
        ]
        routes = [
            *load_docs("virtualservices.yaml"),
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "tcp-over-tls", "namespace": "default"},
                "spec": {
                    "hosts": [TCP_OVER_TLS],
                    "gateways": ["tls-gateway"],
                    "tcp": [{"route": [{"destination": {"host": "tcp-echo"}}]}],
                },
            },
        ]
        return {
            "ingressgateway.yaml": ingress,
            "gateway.yaml": gateways,
            "virtualservices.yaml": routes,
            "backends.yaml": backends,
            "credentials.yaml": self.pki.secrets(),
        }

    def write(self, files: dict[str, list[dict[str, Any]]]) -> None:
        """Write the files that differ (each write is a change to wait out)."""
        for name, docs in files.items():
            path = self.config_dir / name
            text = yaml.safe_dump_all(docs, sort_keys=False)
            if not path.exists() or path.read_text() != text:
                tmp = path.with_name(f".{name}.tmp")  # hidden: pilotfish skips it
                tmp.write_text(text)
                tmp.replace(path)

    # -- traffic ---------------------------------------------------------------------

    def https(
        self,
        host: str,
        path: str,
        ctx: ssl.SSLContext,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return request(
            f"https://{host}{path}",
            headers=headers,
            connect_to=(LOCALHOST, self.ports.https),
            ssl_context=ctx,
            timeout=5,
        )

    def wait_https(self, host: str, path: str, status: int, ctx: ssl.SSLContext) -> Response:
        def answered() -> Response | None:
            response = self.https(host, path, ctx)
            return response if response.status == status else None

        return wait_until(
            answered,
            timeout=15,
            ignore=(OSError,),
            message=lambda: f"https://{host}{path} never gave {status}:\n{self.envoy.log_tail()}",
        )


@pytest.fixture(scope="module", params=XDS_PROTOCOLS)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The world once with Envoy on state-of-the-world ADS, once on delta ADS (SDS
    rotation is where delta sends one resource instead of every subscribed secret)."""
    config_dir = tmp_path_factory.mktemp("config")
    pki = Pki.make()
    world = World(config_dir, Ports(*free_ports(5)), pki)
    with (
        HttpbinServer() as httpbin,
        EchoHttpServer("helloworld-v1", body=b"hello from helloworld-v1") as helloworld,
        TlsHttpServer(pki.nginx, b"hello from nginx") as nginx,
        TcpEchoServer(prefix=b"echo: ") as tcp_echo,
    ):
        world.upstream_ports = {
            "httpbin": httpbin.port,
            "helloworld-v1": helloworld.port,
            "my-nginx": nginx.port,
            "tcp-echo": tcp_echo.port,
        }
        world.write(world.base_files())
        with InProcessPilotfish(config_dir) as pilotfish:
            world.pilotfish = pilotfish
            bootstrap = render_bootstrap(
                BootstrapOptions(
                    proxy_type="router",
                    name="ingress-0",
                    namespace="istio-system",
                    labels={"istio": "ingressgateway"},
                    xds_address=pilotfish.xds_address,
                    admin_port=0,
                )
            )
            world.node_id = bootstrap["node"]["id"]
            with EnvoyProcess(
                bootstrap, name="secure-ingress", xds_protocol=request.param
            ) as envoy:
                world.envoy = envoy
                envoy.wait_ready()
                yield world


@pytest.fixture(autouse=True)
def base_config(world: World) -> World:
    world.write(world.base_files())
    world.wait_https(
        "httpbin.example.com", "/status/418", 418, client_context(world.pki.ca.cert_pem)
    )
    return world


def test_simple_tls_serves_the_secret_certificate(world: World) -> None:
    ctx = client_context(world.pki.ca.cert_pem)
    teapot = world.https("httpbin.example.com", "/status/418", ctx)
    assert teapot.status == 418 and "teapot" in teapot.text
    cert = peer_certificate((LOCALHOST, world.ports.https), "httpbin.example.com", ctx)
    assert common_name(cert) == "httpbin.example.com"
    assert cert.serial_number == world.pki.httpbin.cert.serial_number
    h2_ctx = client_context(world.pki.ca.cert_pem)
    h2_ctx.set_alpn_protocols(["h2", "http/1.1"])
    with connect((LOCALHOST, world.ports.https), "httpbin.example.com", h2_ctx) as tls:
        assert tls.selected_alpn_protocol() == "h2"  # the gateway offers h2 and http/1.1
    # A client trusting another CA refuses the gateway's certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        world.https("httpbin.example.com", "/status/418", client_context(make_ca().cert_pem))


def test_each_sni_gets_its_own_certificate_and_backend(world: World) -> None:
    ctx = client_context(world.pki.ca.cert_pem)
    hello = world.https("helloworld-v1.example.com", "/hello", ctx)
    assert hello.status == 200 and hello.body == b"hello from helloworld-v1"
    assert hello.headers["x-echo-server"] == "helloworld-v1"
    cert = peer_certificate((LOCALHOST, world.ports.https), "helloworld-v1.example.com", ctx)
    assert common_name(cert) == "helloworld-v1.example.com"
    # Each server has its own route configuration: a host of the other one is not there.
    assert world.https("helloworld-v1.example.com", "/status/418", ctx).status == 404
    assert world.https("httpbin.example.com", "/hello", ctx).status == 404
    mixed = world.https(
        "helloworld-v1.example.com", "/status/418", ctx, headers={"Host": "httpbin.example.com"}
    )
    assert mixed.status == 404


def test_mutual_tls_needs_a_client_certificate_from_the_ca(world: World) -> None:
    pki = world.pki
    signed = client_context(pki.ca.cert_pem, client=pki.client)
    assert world.wait_https("mtls.example.com", "/status/418", 418, signed).status == 418
    # The backend learns who the client is, as behind Istio's gateway.
    echoed = world.https("mtls.example.com", "/delay/0", signed).json()["headers"]
    assert 'Subject="CN=client.example.com"' in echoed["X-Forwarded-Client-Cert"]
    stats = f"listener.0.0.0.0_{world.ports.https}.ssl"
    # With TLS 1.3 the client's handshake completes before the server checks its
    # certificate: the refusal shows on the first read. Envoy's counters say why.
    no_cert = world.envoy.stat(f"{stats}.fail_verify_no_cert")
    with pytest.raises(ssl.SSLError):
        world.https("mtls.example.com", "/status/418", client_context(pki.ca.cert_pem))
    assert world.envoy.stat(f"{stats}.fail_verify_no_cert") == no_cert + 1
    stranger = issue(make_ca("some other CA"), ["client.example.com"], client=True)
    unknown_ca = world.envoy.stat(f"{stats}.fail_verify_error")
    with pytest.raises(ssl.SSLError):
        world.https(
            "mtls.example.com", "/status/418", client_context(pki.ca.cert_pem, client=stranger)
        )
    assert world.envoy.stat(f"{stats}.fail_verify_error") == unknown_ca + 1


def test_passthrough_reaches_the_upstream_with_its_own_certificate(world: World) -> None:
    pki = world.pki
    upstream_trust = client_context(pki.nginx_ca.cert_pem)
    page = world.https("nginx.example.com", "/", upstream_trust)
    assert page.status == 200 and page.body == b"hello from nginx"
    cert = peer_certificate((LOCALHOST, world.ports.https), "nginx.example.com", upstream_trust)
    assert cert.issuer == pki.nginx_ca.cert.subject
    assert common_name(cert) == "nginx.example.com"
    with pytest.raises(ssl.SSLCertVerificationError):  # not the gateway's CA
        world.https("nginx.example.com", "/", client_context(pki.ca.cert_pem))


def test_tcp_server_forwards_to_the_echo_upstream(world: World) -> None:
    with socket.create_connection((LOCALHOST, world.ports.tcp), timeout=5) as sock:
        assert exchange(sock, b"hello\n", len(b"echo: hello\n")) == b"echo: hello\n"
        assert exchange(sock, b"again\n", len(b"echo: again\n")) == b"echo: again\n"


def test_tls_server_terminates_then_forwards_tcp(world: World) -> None:
    ctx = client_context(world.pki.ca.cert_pem)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with connect((LOCALHOST, world.ports.tls), TCP_OVER_TLS, ctx) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        assert common_name(cert) == TCP_OVER_TLS
        # The gateway offers no ALPN for opaque TCP: the upstream may not speak HTTP.
        assert tls.selected_alpn_protocol() is None
        assert exchange(tls, b"over tls\n", len(b"echo: over tls\n")) == b"echo: over tls\n"


def test_auto_passthrough_routes_by_the_sni_naming_the_service(world: World) -> None:
    ctx = client_context(world.pki.nginx_ca.cert_pem)
    ctx.check_hostname = False  # the SNI names the cluster, not the certificate's host
    with connect((LOCALHOST, world.ports.auto), NGINX_SNI_DNAT, ctx) as tls:
        reply = exchange(tls, b"GET / HTTP/1.1\r\nHost: nginx\r\n\r\n", 10_000)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"hello from nginx")


def test_https_redirect_answers_301(world: World) -> None:
    response = request(
        f"http://{LOCALHOST}:{world.ports.http}/status/200",
        headers={"Host": "httpbin.example.com"},
    )
    assert response.status == 301
    assert response.headers["location"] == "https://httpbin.example.com/status/200"


def test_rotation_reaches_envoy_over_sds_without_restart(world: World) -> None:
    envoy, pki = world.envoy, world.pki
    pid = envoy.pid
    old_ctx = client_context(pki.ca.cert_pem)
    listeners_before = {n: r.last_updated for n, r in envoy.dynamic_listeners().items()}
    modified_before = envoy.stat("listener_manager.listener_modified")
    new_ca = make_ca("example.com (rotated)")
    new_ctx = client_context(new_ca.cert_pem)
    files = world.base_files()
    files["credentials.yaml"] = pki.secrets(httpbin=issue(new_ca, ["httpbin.example.com"]))

    # A request in flight, on a connection made with the old certificate, while the
    # Secret changes: it completes.
    with connect((LOCALHOST, world.ports.https), "httpbin.example.com", old_ctx, 15) as old:
        old.sendall(
            b"GET /delay/2 HTTP/1.1\r\nHost: httpbin.example.com\r\nConnection: close\r\n\r\n"
        )
        world.write(files)
        world.wait_https("httpbin.example.com", "/status/418", 418, new_ctx)
        assert exchange(old, b"", 10**6).startswith(b"HTTP/1.1 200 OK")

    with pytest.raises(ssl.SSLCertVerificationError):
        world.https("httpbin.example.com", "/status/418", old_ctx)
    assert envoy.pid == pid and envoy.running()
    # Only the secret changed: no listener was replaced (nor drained).
    assert {n: r.last_updated for n, r in envoy.dynamic_listeners().items()} == listeners_before
    assert envoy.stat("listener_manager.listener_modified") == modified_before
    # The other hosts kept their certificates.
    hello = world.https("helloworld-v1.example.com", "/hello", old_ctx)
    assert hello.status == 200


def test_config_dump_shows_no_key_material(world: World) -> None:
    dump = world.pilotfish.debug(f"/debug/config_dump?proxy={world.node_id}").text
    assert "[redacted]" in dump
    for identity in (world.pki.httpbin, world.pki.mtls, world.pki.tcp):
        for pem in (identity.key_pem, identity.cert_pem):
            body = b"".join(pem.splitlines()[1:-1]).decode()  # the base64 inside the PEM
            assert body[:40] not in dump
            assert base64.b64encode(pem).decode()[:40] not in dump
