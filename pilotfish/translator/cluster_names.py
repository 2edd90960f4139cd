"""Cluster names, built and read in this one place.

Istio names a service port's cluster `outbound|<port>|<subset>|<fqdn>` and a sidecar's
cluster to its own workload `inbound|<port>||`; the SNI form of the same name
(`outbound_.<port>_.<subset>_.<fqdn>`) is what AUTO_PASSTHROUGH gateways match on. The
IR carries names as strings (what Envoy sees); code that needs the parts back reads
them with `ClusterName.parse`, never by splitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["inbound", "outbound"]

# The fixed clusters of a sidecar, named as Istio names them.
PASSTHROUGH_CLUSTER = "PassthroughCluster"  # outbound, to the original destination
BLACKHOLE_CLUSTER = "BlackHoleCluster"  # no endpoints: connections are closed
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"  # inbound, no Service's port

_SEPARATOR = "|"
_SNI_SEPARATOR = "_."


@dataclass(frozen=True)
class ClusterName:
    direction: Direction
    port: int
    subset: str = ""
    host: str = ""  # "" for inbound clusters: the workload itself

    @classmethod
    def outbound(cls, port: int, host: str, subset: str = "") -> ClusterName:
        return cls("outbound", port, subset, host)

    @classmethod
    def inbound(cls, port: int) -> ClusterName:
        return cls("inbound", port)

    def __str__(self) -> str:
        return _SEPARATOR.join((self.direction, str(self.port), self.subset, self.host))

    @property
    def sni(self) -> str:
        """The SNI form: `outbound_.<port>_.<subset>_.<fqdn>`."""
        return _SNI_SEPARATOR.join((self.direction, str(self.port), self.subset, self.host))

    @classmethod
    def parse(cls, text: str) -> ClusterName | None:
        """The parts of `outbound|<port>|<subset>|<fqdn>` or `inbound|<port>||`; None for
        any other name (PassthroughCluster, an SNI-form name, ...)."""
        return cls._parse(text, _SEPARATOR)

    @classmethod
    def parse_sni(cls, text: str) -> ClusterName | None:
        """The parts of the SNI form; None for any other name."""
        return cls._parse(text, _SNI_SEPARATOR)

    @classmethod
    def _parse(cls, text: str, separator: str) -> ClusterName | None:
        parts = text.split(separator, 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        direction, port, subset, host = parts
        if direction == "outbound" and host:
            return cls("outbound", int(port), subset, host)
        if direction == "inbound" and not subset and not host:
            return cls("inbound", int(port))
        return None
