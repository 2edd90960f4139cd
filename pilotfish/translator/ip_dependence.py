"""When a proxy's IP changes what it is served.

The control plane shares one translation between proxies that differ only in what
translation never reads (DESIGN.md: the shape key). A proxy's IP is read when:
- a ServiceEntry endpoint or a WorkloadEntry of its namespace is at that IP: the entry is
  then one of the proxy's own Services (service_targets.py);
- it is a sidecar whose Sidecar resource has `ingress:` listeners: as Istio, their chains
  are named after the pod's IP (unless `bind` says), captureMode NONE ones bind to it,
  and a `0.0.0.0:PORT` defaultEndpoint sends to it (sidecar/ingress.py).
- it is a sidecar with an IPv6 address: its inbound clusters bind to `::6`, not
  127.0.0.6 (the family follows the pod's).
Everything else of a sidecar's inbound side is the same for every pod of a workload: it
sends to the original destination, whatever that pod's IP; its outbound side never reads
the IP (sidecar/outbound.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from pilotfish.api.networking.v1alpha3 import sidecar_pb2 as sc_pb
from pilotfish.model.configset import ConfigSet
from pilotfish.translator.diagnostics import Diagnostics
from pilotfish.translator.proxy import SIDECAR, Proxy
from pilotfish.translator.service_targets import addressed_ips
from pilotfish.translator.sidecar.inbound_ports import is_ipv6
from pilotfish.translator.sidecar_scope import applicable_sidecar


def ip_matters(config: ConfigSet) -> Callable[[Proxy], bool]:
    """Whether a proxy's translation under `config` depends on its IP."""
    addressed = addressed_ips(config)
    any_ingress = any(cast(sc_pb.Sidecar, s.spec).ingress for s in config.istio("Sidecar"))

    def matters(proxy: Proxy) -> bool:
        if (proxy.namespace, proxy.ip) in addressed:
            return True
        if proxy.type != SIDECAR:
            return False
        if is_ipv6(proxy.ip):
            return True
        if not any_ingress:
            return False
        sidecar = applicable_sidecar(config, proxy, Diagnostics())  # problems: reported elsewhere
        return sidecar is not None and bool(cast(sc_pb.Sidecar, sidecar.spec).ingress)

    return matters
