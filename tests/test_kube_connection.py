"""Connection settings come from the `kubernetes` library's loaders; TLS and auth are ours."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import pytest

from pilotfish.model.errors import ConfigError
from pilotfish.sources.kubernetes import (
    KubernetesConfigError,
    KubernetesSettings,
    KubernetesSource,
    load_connection,
    validation_messages,
)
from pilotfish.sources.kubernetes.client import ApiError, KubeClient
from testsupport.certs import issue as issue_cert
from testsupport.certs import make_ca
from testsupport.fake_kube import FakeKube, FakeKubeTLS


def _tls(client_auth: bool = False) -> tuple[FakeKubeTLS, tuple[bytes, bytes]]:
    ca = make_ca()
    server = issue_cert(ca, ["127.0.0.1"])
    client = issue_cert(ca, ["tester"], client=True)
    tls = FakeKubeTLS(
        server.cert_pem, server.key_pem, ca.cert_pem, ca.cert_pem if client_auth else None
    )
    return tls, (client.cert_pem, client.key_pem)


async def _sync(kubeconfig: Path) -> list[str]:
    source = KubernetesSource(KubernetesSettings(kubeconfig=kubeconfig))
    await source.start()
    try:
        await asyncio.wait_for(source.wait_synced(), 10)
        return [f.file for f in source.load()]
    finally:
        await source.close()


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}


def test_https_with_the_ca_from_the_kubeconfig_and_a_token(tmp_path: Path) -> None:
    tls, _ = _tls()
    with FakeKube(tls=tls) as kube:
        kube.add(NAMESPACE)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        connection = load_connection(kubeconfig)
        assert connection.host.startswith("https://127.0.0.1:")
        assert connection.ssl_context is not None
        assert connection.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert asyncio.run(connection.auth_headers()) == {"Authorization": "Bearer fake-token"}
        assert asyncio.run(_sync(kubeconfig)) == ["kubernetes:Namespace/default"]


def test_https_with_a_client_certificate(tmp_path: Path) -> None:
    tls, client = _tls(client_auth=True)
    with FakeKube(tls=tls) as kube:
        kube.add(NAMESPACE)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", client_cert=client)
        assert asyncio.run(load_connection(kubeconfig).auth_headers()) == {}
        assert asyncio.run(_sync(kubeconfig)) == ["kubernetes:Namespace/default"]


def test_a_server_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    tls, _ = _tls()
    other_ca = make_ca("someone else")
    with FakeKube(tls=FakeKubeTLS(tls.cert_pem, tls.key_pem, other_ca.cert_pem)) as kube:
        connection = load_connection(kube.write_kubeconfig(tmp_path / "kubeconfig"))

        async def get() -> None:
            client = KubeClient(connection)
            try:
                await client.get("/api")
            finally:
                await client.close()

        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            asyncio.run(get())


def test_unauthorized_is_an_api_error(tmp_path: Path) -> None:
    with FakeKube() as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", token="wrong")

        async def get() -> None:
            client = KubeClient(load_connection(kubeconfig))
            try:
                await client.get("/api")
            finally:
                await client.close()

        with pytest.raises(ApiError) as raised:
            asyncio.run(get())
        assert raised.value.status == 401


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match="does not exist"):
        load_connection(tmp_path / "missing")
    with FakeKube() as kube:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(KubernetesConfigError):
        load_connection(kubeconfig, context="no-such-context")


def test_validation_messages_shape_and_order() -> None:
    def problem(message: str, field: str | None, severity: str = "error") -> ConfigError:
        return ConfigError(message, "f", 0, "VirtualService", "default", "web", field, severity)

    messages = validation_messages(
        [
            problem("route to an unknown host", "spec.http[0]", "warning"),
            problem("unknown field 'x'", "spec.x"),
            problem("gateway 'default/gw' does not exist", "spec.gateways[0]"),
            problem("unknown field 'x'", "spec.x"),  # the same problem twice: once
        ]
    )
    assert messages == [
        {
            "type": {"code": "IST0101", "name": "ReferencedResourceNotFound"},
            "level": "ERROR",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            "description": "spec.gateways[0]: gateway 'default/gw' does not exist",
        },
        {
            "type": {"code": "IST0106", "name": "SchemaValidationError"},
            "level": "ERROR",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
            "description": "spec.x: unknown field 'x'",
        },
        {
            "type": {"code": "IST0101", "name": "ReferencedResourceNotFound"},
            "level": "WARNING",
            "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0101/",
            "description": "spec.http[0]: route to an unknown host",
        },
    ]
