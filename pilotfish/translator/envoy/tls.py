"""IR TLS termination and SDS secrets -> Envoy DownstreamTlsContext and Secret."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf.wrappers_pb2 import BoolValue

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import ads_config_source

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"


def sds_config(name: str) -> secret_pb2.SdsSecretConfig:
    # No initial_fetch_timeout: as Istio, a listener is not held back forever by a
    # secret (the snapshot always carries the ones its listeners name anyway).
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def downstream_tls_context(spec: ir.DownstreamTls) -> tls_pb2.DownstreamTlsContext:
    common = tls_pb2.CommonTlsContext(
        alpn_protocols=list(spec.alpn),
        tls_certificate_sds_secret_configs=[sds_config(n) for n in spec.certificate_secrets],
    )
    if not spec.params.is_default:
        common.tls_params.CopyFrom(tls_params(spec.params))
    if spec.client is not None:
        common.combined_validation_context.CopyFrom(
            tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
                default_validation_context=common_pb2.CertificateValidationContext(
                    match_typed_subject_alt_names=[
                        san_matcher(s) for s in spec.client.subject_alt_names
                    ],
                    verify_certificate_spki=list(spec.client.spki),
                    verify_certificate_hash=list(spec.client.hashes),
                ),
                validation_context_sds_secret_config=sds_config(spec.client.ca_secret),
            )
        )
    return tls_pb2.DownstreamTlsContext(
        common_tls_context=common,
        require_client_certificate=BoolValue(
            value=spec.client is not None and spec.client.required
        ),
    )


def tls_params(spec: ir.TlsParams) -> common_pb2.TlsParameters:
    version = common_pb2.TlsParameters.TlsProtocol.Value
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=version(spec.min_version),
        tls_maximum_protocol_version=version(spec.max_version),
        cipher_suites=list(spec.cipher_suites),
    )


def san_matcher(spec: ir.SanMatch) -> common_pb2.SubjectAltNameMatcher:
    return common_pb2.SubjectAltNameMatcher(
        san_type=common_pb2.SubjectAltNameMatcher.SanType.Value(spec.type),
        matcher=string_pb2.StringMatcher(exact=spec.value),
    )


def secret(spec: ir.SdsSecret) -> secret_pb2.Secret:
    if isinstance(spec, ir.CertificateSecret):
        return secret_pb2.Secret(
            name=spec.name,
            tls_certificate=common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=spec.certificate_chain),
                private_key=base_pb2.DataSource(inline_bytes=spec.private_key),
            ),
        )
    validation = common_pb2.CertificateValidationContext(
        trusted_ca=base_pb2.DataSource(inline_bytes=spec.trusted_ca)
    )
    if spec.crl:
        validation.crl.CopyFrom(base_pb2.DataSource(inline_bytes=spec.crl))
    return secret_pb2.Secret(name=spec.name, validation_context=validation)
