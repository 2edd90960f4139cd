"""Small pieces every builder needs: ADS config sources, Any packing, durations."""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

V3 = config_source_pb2.ApiVersion.V3


def ads_config_source(
    *, initial_fetch_timeout_ms: int | None = None
) -> config_source_pb2.ConfigSource:
    """Fetch over the proxy's ADS stream (the bootstrap's ads_config)."""
    source = config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=V3
    )
    if initial_fetch_timeout_ms is not None:
        source.initial_fetch_timeout.CopyFrom(millis(initial_fetch_timeout_ms))
    return source


def typed(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)  # map order must not change the hash
    return packed


def millis(ms: int) -> Duration:
    return Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)
