"""How each kind of proxy's HTTP connection managers treat requests, as Istio sets them.

The shared HCM builder (envoy/listener.py) encodes whatever the IR says; the choices that
differ between a gateway and a sidecar's inbound or outbound side are made here.
"""

from __future__ import annotations

from dataclasses import replace

from pilotfish.translator import ir

# A gateway is the edge: the client's address is the peer's, as in Istio.
GATEWAY = ir.HttpOptions(use_remote_address=True)

# A terminating gateway server: as Istio's gateways, the backend learns who the (mutual
# TLS) client was from x-forwarded-client-cert, set here and never taken from the client.
GATEWAY_TLS = replace(
    GATEWAY,
    forward_client_cert="SANITIZE_SET",
    client_cert_details=ir.ClientCertDetails(subject=True, cert=True, dns=True, uri=True),
)

# A sidecar's inbound side, as Istio's: the caller is the peer (its x-forwarded-for is
# not trusted for the client's address); the details of a client certificate are
# appended for the application (subject, URI and DNS SANs); no stream idle timeout (the
# application decides how long a stream may be idle).
SIDECAR_INBOUND = ir.HttpOptions(
    forward_client_cert="APPEND_FORWARD",
    client_cert_details=ir.ClientCertDetails(subject=True, dns=True, uri=True),
    stream_idle_timeout_ms=0,
)

# A sidecar's outbound connection managers: the client is the workload itself, so its
# x-forwarded-for is kept (no use_remote_address); and, as Istio on every sidecar
# connection manager, no stream idle timeout (long-lived streams must not be cut).
SIDECAR_OUTBOUND = ir.HttpOptions(stream_idle_timeout_ms=0)
