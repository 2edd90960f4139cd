"""Where the API server is and how to authenticate, read by the `kubernetes` client library.

The library's own loaders understand every kubeconfig form (certificates inline or in
files, tokens, token files, exec and auth-provider plugins with refresh) and the in-cluster
service account (a token file that is re-read as it rotates). We take the resulting
`Configuration` and do the HTTP ourselves (aiohttp), because the library's watch is
synchronous and hides the protocol details an informer depends on.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from pilotfish.sources.base import SourceUnavailableError

# The loaders are not annotated in every library version we accept.
_load_incluster_config: Callable[..., None] = k8s_config.load_incluster_config
_load_kube_config: Callable[..., Any] = k8s_config.load_kube_config


class KubernetesConfigError(SourceUnavailableError):
    """No usable connection settings (no kubeconfig, a broken one, no such context...)."""


@dataclass(frozen=True)
class Connection:
    """The API server's address, TLS settings and credentials."""

    host: str  # e.g. https://10.0.0.1:443, no trailing slash
    ssl_context: ssl.SSLContext | None  # None for plain http
    server_hostname: str | None  # TLS server name when it differs from the host's
    configuration: k8s_client.Configuration
    origin: str  # "in-cluster" or the kubeconfig path, for logs

    async def auth_headers(self) -> dict[str, str]:
        """The Authorization header, refreshed by the library when its token expires.

        Runs in a thread: a refresh may run an exec plugin or read a token file.
        """
        return await asyncio.to_thread(_auth_headers, self.configuration)


def _auth_headers(configuration: k8s_client.Configuration) -> dict[str, str]:
    # auth_settings() calls the refresh hook and knows where each library version keeps
    # the token ("authorization" in older ones, "BearerToken" in newer).
    bearer = configuration.auth_settings().get("BearerToken")
    if bearer and bearer.get("value"):
        return {"Authorization": str(bearer["value"])}
    if configuration.username and configuration.password:
        return {"Authorization": str(configuration.get_basic_auth_token())}
    return {}


def load_connection(kubeconfig: Path | None = None, context: str | None = None) -> Connection:
    """In-cluster config when running in a pod and no kubeconfig is given, else the
    kubeconfig (`kubeconfig`, or $KUBECONFIG, or ~/.kube/config)."""
    configuration = k8s_client.Configuration()
    try:
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            _load_incluster_config(client_configuration=configuration)
            origin = "in-cluster"
        else:
            if kubeconfig is not None and not kubeconfig.is_file():
                raise KubernetesConfigError(f"kubeconfig {kubeconfig} does not exist")
            _load_kube_config(
                config_file=str(kubeconfig) if kubeconfig is not None else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            origin = str(kubeconfig) if kubeconfig else "default kubeconfig"
    except k8s_config.ConfigException as exc:
        raise KubernetesConfigError(f"cannot load Kubernetes config: {exc}") from exc
    except OSError as exc:
        raise KubernetesConfigError(f"cannot load Kubernetes config: {exc}") from exc
    host = str(configuration.host).rstrip("/")
    return Connection(
        host=host,
        ssl_context=_ssl_context(configuration) if host.startswith("https:") else None,
        server_hostname=getattr(configuration, "tls_server_name", None) or None,
        configuration=configuration,
        origin=origin,
    )


def _ssl_context(configuration: k8s_client.Configuration) -> ssl.SSLContext:
    ca_data = getattr(configuration, "ca_cert_data", None)  # newer library versions only
    if configuration.verify_ssl:
        context = ssl.create_default_context(
            cafile=configuration.ssl_ca_cert or None, cadata=ca_data or None
        )
        if configuration.assert_hostname is False:
            context.check_hostname = False
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context
