"""The HTTP filters routes configure (fault, CORS): their HCM entries and per-route configs."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb,
)
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf.wrappers_pb2 import BoolValue

from pilotfish.translator import ir
from pilotfish.translator.envoy.common import millis, typed

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"

# IR names -> Envoy filter names, in the order Istio's gateways chain them (before the router).
_FILTERS = {"fault": FAULT_FILTER, "cors": CORS_FILTER}
_ORDER = ("cors", "fault")


def hcm_filters(names: tuple[str, ...]) -> list[hcm_pb.HttpFilter]:
    """The HCM entries: empty configs, each route says what it wants."""
    out = []
    for name in _ORDER:
        if name not in names:
            continue
        config = fault_pb2.HTTPFault() if name == "fault" else cors_pb2.Cors()
        out.append(hcm_pb.HttpFilter(name=_FILTERS[name], typed_config=typed(config)))
    return out


def million(numerator: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(
        numerator=numerator, denominator=percent_pb2.FractionalPercent.MILLION
    )


def fault(spec: ir.Fault) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if spec.delay_ms is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=millis(spec.delay_ms), percentage=million(spec.delay_per_million)
            )
        )
    if spec.abort_http_status is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                http_status=spec.abort_http_status, percentage=million(spec.abort_per_million)
            )
        )
    elif spec.abort_grpc_status is not None:
        out.abort.CopyFrom(
            fault_pb2.FaultAbort(
                grpc_status=spec.abort_grpc_status, percentage=million(spec.abort_per_million)
            )
        )
    return out


def cors(spec: ir.Cors, origins: list[string_pb2.StringMatcher]) -> cors_pb2.CorsPolicy:
    """`origins`: spec.allow_origins as Envoy matchers (route.py builds those)."""
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=origins,
        allow_methods=",".join(spec.allow_methods),
        allow_headers=",".join(spec.allow_headers),
        expose_headers=",".join(spec.expose_headers),
        # As Istio: the policy is on for every request it applies to.
        filter_enabled=base_pb2.RuntimeFractionalPercent(
            default_value=percent_pb2.FractionalPercent(
                numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
            )
        ),
    )
    if spec.max_age_s is not None:
        out.max_age = str(spec.max_age_s)
    if spec.allow_credentials is not None:
        out.allow_credentials.CopyFrom(BoolValue(value=spec.allow_credentials))
    if spec.forward_unmatched_preflights is not None:
        out.forward_not_matching_preflights.CopyFrom(
            BoolValue(value=spec.forward_unmatched_preflights)
        )
    return out
