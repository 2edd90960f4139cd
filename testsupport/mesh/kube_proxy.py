"""What kube-proxy does for a pod: a connection to a Service's cluster IP and port is
sent (DNAT) to one of the Service's pods, on the target port, picked at random.

In the mesh world this matters for traffic no sidecar routes to an endpoint itself: a
sidecar's passthrough (under ALLOW_ANY, a Service its Sidecar resource hides: Envoy
connects to the original destination, the cluster IP, as UID 1337, which the capture
rules let through) and pods without a sidecar. The rules sit in the nat OUTPUT chain
after the capture rules, so a workload's own connections still go to its sidecar first,
as in a cluster where the pod's iptables run before the node's kube-proxy rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from testsupport.mesh.netns import exec_prefix, run, tool

if TYPE_CHECKING:
    from testsupport.mesh.pod import Pod
    from testsupport.mesh.world import Service

CHAIN = "KUBE-SERVICES"


def service_rules(services: Iterable[Service], pods: Sequence[Pod]) -> str:
    """The chain's rules as ``iptables-restore --noflush`` input (the chain is emptied
    first). Of n endpoints the first is taken with probability 1/n, the next with
    1/(n-1) of what is left, ..., the last always: each 1/n, as kube-proxy does."""
    lines = ["*nat", f":{CHAIN} - [0:0]"]
    for svc in services:
        if svc.cluster_ip is None:
            continue  # headless: names resolve to the pods themselves
        endpoints = [p for p in pods if svc.selects(p)]
        for port in svc.ports:
            for i, pod in enumerate(endpoints):
                rule = f"-A {CHAIN} -d {svc.cluster_ip}/32 -p tcp --dport {port.port}"
                left = len(endpoints) - i
                if left > 1:
                    rule += f" -m statistic --mode random --probability {1 / left:.6f}"
                lines.append(f"{rule} -j DNAT --to-destination {pod.ip}:{port.target}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def install_chain(netns: str) -> None:
    """Create the chain in ``netns`` and jump to it from OUTPUT, after what is there."""
    prefix = [*exec_prefix(netns), tool("iptables")]
    run([*prefix, "-t", "nat", "-N", CHAIN])
    run([*prefix, "-t", "nat", "-A", "OUTPUT", "-j", CHAIN])


def program(netns: str, rules: str) -> None:
    run([*exec_prefix(netns), tool("iptables-restore"), "--noflush"], input=rules)
