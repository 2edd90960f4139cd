"""Traffic capture as Istio's init container (istio-iptables) sets it up in a pod.

The rules are those istio-iptables writes for the injector's default arguments
(``-p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020``),
nat table only, IPv4, no DNS capture:

- inbound: every TCP connection arriving from outside (PREROUTING) goes to Envoy's
  virtualInbound port 15006, except the HBONE tunnel port 15008 and Envoy's own ports
  (Prometheus 15090, readiness 15021, the agent's 15020);
- outbound: every connection the pod opens (OUTPUT) goes to virtualOutbound 15001, except
  connections opened by the proxy's user or group (1337: Envoy's own upstream traffic
  must not loop back into Envoy) and loopback traffic of everyone else;
- the proxy's own connections to the pod's IP over loopback (an app calling itself
  through its Service: app -> Envoy outbound -> Envoy inbound -> app) go to 15006, and
  connections from 127.0.0.6 (where Istio's inbound passthrough binds) are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from testsupport.mesh.netns import exec_prefix, run, tool

PROXY_UID = 1337
PROXY_GID = 1337
OUTBOUND_CAPTURE_PORT = 15001  # Envoy's virtualOutbound
INBOUND_CAPTURE_PORT = 15006  # Envoy's virtualInbound
INBOUND_TUNNEL_PORT = 15008  # HBONE; never redirected
# Envoy's Prometheus and readiness listeners, pilot-agent's status port.
EXCLUDED_INBOUND_PORTS = (15090, 15021, 15020)
INBOUND_PASSTHROUGH_SOURCE = "127.0.0.6"
LOCALHOST = "127.0.0.1/32"


def istio_nat_rules(
    proxy_uid: int = PROXY_UID,
    proxy_gid: int = PROXY_GID,
    excluded_inbound_ports: Sequence[int] = EXCLUDED_INBOUND_PORTS,
) -> str:
    """The nat table, as ``iptables-restore`` input."""
    rules = [
        "*nat",
        ":ISTIO_INBOUND - [0:0]",
        ":ISTIO_REDIRECT - [0:0]",
        ":ISTIO_IN_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_CAPTURE_PORT}",
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_CAPTURE_PORT}",
        # Inbound.
        "-A PREROUTING -p tcp -j ISTIO_INBOUND",
        f"-A ISTIO_INBOUND -p tcp --dport {INBOUND_TUNNEL_PORT} -j RETURN",
        *(f"-A ISTIO_INBOUND -p tcp --dport {port} -j RETURN" for port in excluded_inbound_ports),
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT",
        # Outbound.
        "-A OUTPUT -j ISTIO_OUTPUT",
        f"-A ISTIO_OUTPUT -o lo -s {INBOUND_PASSTHROUGH_SOURCE}/32 -j RETURN",
    ]
    for match in (f"--uid-owner {proxy_uid}", f"--gid-owner {proxy_gid}"):
        rules += [
            # The proxy calling the pod's own IP over loopback: that is inbound traffic.
            f"-A ISTIO_OUTPUT -o lo ! -d {LOCALHOST} -p tcp ! --dport {INBOUND_TUNNEL_PORT}"
            f" -m owner {match} -j ISTIO_IN_REDIRECT",
            # Anyone else over loopback: not captured.
            f"-A ISTIO_OUTPUT -o lo -m owner ! {match} -j RETURN",
            # The proxy's own outbound traffic: never back into the proxy.
            f"-A ISTIO_OUTPUT -m owner {match} -j RETURN",
        ]
    rules += [
        f"-A ISTIO_OUTPUT -d {LOCALHOST} -j RETURN",
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT",
        "COMMIT",
    ]
    return "\n".join(rules) + "\n"


def install_capture(netns: str, rules: str | None = None) -> None:
    """Load the nat rules into ``netns`` (a fresh namespace: its nat table is empty)."""
    run([*exec_prefix(netns), tool("iptables-restore")], input=rules or istio_nat_rules())


def nat_table(netns: str) -> str:
    """``iptables-save -t nat`` of ``netns``: what is in force, for failure messages."""
    return run([*exec_prefix(netns), tool("iptables-save"), "-t", "nat"])
