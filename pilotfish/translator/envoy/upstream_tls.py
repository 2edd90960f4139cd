"""IR upstream TLS (DestinationRule tls SIMPLE/MUTUAL) -> Envoy UpstreamTlsContext."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import typed
from pilotfish.translator.envoy.tls import TLS_TRANSPORT_SOCKET, san_matcher, sds_config


def upstream_tls_context(spec: ir.UpstreamTls) -> tls_pb2.UpstreamTlsContext:
    common = tls_pb2.CommonTlsContext()
    if spec.certificate_secret:
        common.tls_certificate_sds_secret_configs.append(sds_config(spec.certificate_secret))
    elif spec.certificate_file:
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=spec.certificate_file),
                private_key=base_pb2.DataSource(filename=spec.private_key_file),
            )
        )
    if not spec.insecure_skip_verify:
        validation = common_pb2.CertificateValidationContext(
            match_typed_subject_alt_names=[san_matcher(s) for s in spec.subject_alt_names]
        )
        if spec.ca_secret:
            common.combined_validation_context.CopyFrom(
                tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                    default_validation_context=validation,
                    validation_context_sds_secret_config=sds_config(spec.ca_secret),
                )
            )
        elif spec.ca_file:
            validation.trusted_ca.CopyFrom(base_pb2.DataSource(filename=spec.ca_file))
            common.validation_context.CopyFrom(validation)
        elif spec.subject_alt_names:
            common.validation_context.CopyFrom(validation)
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=spec.sni)
    return context


def transport_socket(spec: ir.UpstreamTls) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(
        name=TLS_TRANSPORT_SOCKET, typed_config=typed(upstream_tls_context(spec))
    )
