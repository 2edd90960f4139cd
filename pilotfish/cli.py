"""The `pilotfish` command: serve, bootstrap, translate, validate."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from google.protobuf.duration_pb2 import Duration

from pilotfish.api.durations import go_duration_to_json
from pilotfish.bootstrap import (
    SIDECAR_PROMETHEUS_PORT,
    SIDECAR_STATUS_PORT,
    BootstrapOptions,
    render_bootstrap,
)
from pilotfish.model.configset import ConfigSet, build_config_set, with_mesh
from pilotfish.model.errors import ConfigError
from pilotfish.model.mesh_config import MeshConfigError, MeshSettings, load_mesh_config
from pilotfish.node_id import NodeId
from pilotfish.server.logging import configure_logging
from pilotfish.sources.base import ConfigSource, SourceUnavailableError
from pilotfish.sources.files import FileSource
from pilotfish.translator.dump import to_yaml, translation_to_data
from pilotfish.translator.proxy import Proxy
from pilotfish.translator.translate import translate
from pilotfish.translator.validate import validation_report

DESCRIPTION = """\
pilotfish: an Envoy xDS control plane that serves Istio networking config
(Gateway, VirtualService, DestinationRule, ServiceEntry, ...) to real Envoy proxies.
"""


def parse_labels(text: str, what: str = "label") -> dict[str, str]:
    """`k=v,k2=v2` -> dict; an empty string is no labels."""
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{what} {item!r} must be key=value")
        labels[key] = value
    return labels


def parse_metadata(text: str) -> dict[str, str]:
    return parse_labels(text, "metadata")


def positive_duration(text: str) -> float:
    """A Go duration (`30m`, `1h30m`, `500ms`) -> seconds, which must be above zero."""
    as_json = go_duration_to_json(text.strip())
    if as_json is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 90s")
    duration = Duration()
    duration.FromJsonString(as_json)
    seconds = duration.ToTimedelta().total_seconds()
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than zero")
    return seconds


MESH_CONFIG_HELP = (
    "Istio MeshConfig YAML (the `mesh` key of the istio ConfigMap, or the ConfigMap): "
    "outboundTrafficPolicy.mode, inboundTrafficPolicy.mode, rootNamespace, "
    "defaultHttpRetryPolicy and connectTimeout change translation; other Istio fields are "
    "named in a warning. Read at start-up."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pilotfish", description=DESCRIPTION)
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="serve xDS (ADS) to Envoy proxies, from a directory of manifests or Kubernetes",
        description="Serve each connecting Envoy its config over ADS. The config comes from "
        "every .yaml/.yml/.json manifest below --config-dir (recursively, watched for "
        "changes), or from a Kubernetes API server (--kubernetes: list/watch, as istiod). "
        "Bad input is reported (log, /debug/config_status) and never stops the server: "
        "the last valid version of an object stays in force.",
    )
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-dir", type=Path, help="directory of manifests")
    source.add_argument(
        "--kubernetes",
        action="store_true",
        help="read config from a Kubernetes API server (in-cluster config in a pod, "
        "else --kubeconfig or $KUBECONFIG or ~/.kube/config)",
    )
    serve.add_argument("--kubeconfig", type=Path, help="kubeconfig file (with --kubernetes)")
    serve.add_argument(
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch only this namespace (repeatable; default: all) (with --kubernetes)",
    )
    serve.add_argument(
        "--secret-namespace",
        dest="secret_namespaces",
        action="append",
        metavar="NS",
        help="read TLS Secrets from this namespace, where gateways run (repeatable; "
        "default: istio-system) (with --kubernetes)",
    )
    serve.add_argument(
        "--write-status",
        action="store_true",
        help="write problems to each Istio object's status.validationMessages (needs RBAC "
        "for */status) (with --kubernetes)",
    )
    serve.add_argument("--mesh-config", type=Path, metavar="FILE", help=MESH_CONFIG_HELP)
    serve.add_argument(
        "--xds-address",
        default="127.0.0.1:15010",
        help="HOST:PORT or unix:/path for ADS (default %(default)s); a Unix socket is made "
        "connectable by any user (sidecars run as 1337): guard it by its directory",
    )
    serve.add_argument(
        "--debug-address",
        default="127.0.0.1:15014",
        help="HOST:PORT for /healthz/ready, /metrics, /debug/* (default %(default)s)",
    )
    serve.add_argument(
        "--debounce-quiet",
        type=float,
        default=0.1,
        metavar="SECONDS",
        help="a change after this long without any is pushed at once; changes that follow "
        "it are pushed once they have been quiet this long (default %(default)s)",
    )
    serve.add_argument(
        "--debounce-max",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="but never wait longer than this after the first change (default %(default)s)",
    )
    serve.add_argument(
        "--max-connection-age",
        type=positive_duration,
        metavar="DURATION",
        help="close each xDS connection after about this long (Go syntax: 30m, 1h; grpc "
        "adds +-10%% jitter), giving its stream 10 s more to end: the proxy reconnects, "
        "through a load balancer maybe to another replica, so proxies spread over new "
        "replicas (Istio's default is 30m). Default: off, connections are kept",
    )

    boot = commands.add_parser(
        "bootstrap",
        help="print an Envoy bootstrap that connects a proxy to pilotfish",
        description="Print (YAML) an Envoy bootstrap: node ID and metadata (labels, namespace) as "
        "Istio's agent would set them, an ADS cluster over HTTP/2, and the admin port. A "
        "sidecar's also has the metadata Pilot reads for sidecars (INTERCEPTION_MODE, "
        "WORKLOAD_NAME, CLUSTER_ID) and Envoy's readiness (15021) and Prometheus (15090) "
        "listeners. Run it with `envoy -c FILE`.",
    )
    boot.add_argument(
        "--type",
        choices=["router", "sidecar"],
        default="router",
        help="router: an ingress/egress gateway; sidecar: an application's proxy",
    )
    boot.add_argument("--name", required=True, help="the proxy's pod name, e.g. ingress-0")
    boot.add_argument("--namespace", required=True, help="the namespace the proxy runs in")
    boot.add_argument(
        "--labels", type=parse_labels, default={}, help="pod labels k=v,... that Gateways select on"
    )
    boot.add_argument("--ip", default="127.0.0.1", help="the proxy's IP, part of its node ID")
    boot.add_argument(
        "--xds-address",
        default="127.0.0.1:15010",
        help="where pilotfish serves ADS: HOST:PORT or unix:/path (default %(default)s)",
    )
    boot.add_argument("--admin-port", type=int, default=15000, help="Envoy's admin port")
    boot.add_argument(
        "--admin-socket",
        default="",
        metavar="PATH",
        help="serve Envoy's admin API on this Unix socket instead of 127.0.0.1:--admin-port",
    )
    boot.add_argument(
        "--metadata",
        type=parse_metadata,
        default={},
        metavar="K=V,...",
        help="more node metadata (string values); for a sidecar this may replace the "
        "defaults INTERCEPTION_MODE=REDIRECT, WORKLOAD_NAME=<name>, CLUSTER_ID=Kubernetes",
    )
    boot.add_argument(
        "--status-port",
        type=int,
        default=SIDECAR_STATUS_PORT,
        help="sidecar: Envoy's /healthz/ready listener on 0.0.0.0 (0: none; default %(default)s)",
    )
    boot.add_argument(
        "--prometheus-port",
        type=int,
        default=SIDECAR_PROMETHEUS_PORT,
        help="sidecar: Envoy's /stats/prometheus listener on 0.0.0.0 (0: none; "
        "default %(default)s)",
    )
    boot.add_argument(
        "--delta",
        action="store_true",
        help="ADS as delta (incremental) xDS, api_type DELTA_GRPC: only changed resources "
        "are sent (default: state of the world, GRPC)",
    )
    boot.add_argument("--json", action="store_true", help="print JSON instead of YAML")

    tr = commands.add_parser(
        "translate",
        help="print the Envoy resources a proxy would get, offline",
        description="Translate the manifests for one proxy and print its listeners, routes, "
        "clusters, endpoints, secrets (redacted) and any problems as YAML. No server needed.",
    )
    tr.add_argument("--config-dir", type=Path, required=True)
    tr.add_argument("--type", choices=["router", "sidecar"], default="router")
    tr.add_argument("--labels", type=parse_labels, default={}, help="the proxy's labels k=v,...")
    tr.add_argument(
        "--namespace", default="istio-system", help="the proxy's namespace (default %(default)s)"
    )
    tr.add_argument("--name", default="proxy-0", help="the proxy's pod name")
    tr.add_argument(
        "--ip",
        default="127.0.0.1",
        help="the proxy's IP (default %(default)s): a ServiceEntry endpoint or WorkloadEntry "
        "there is one of its own Services; a sidecar's Sidecar ingress listeners use it",
    )
    tr.add_argument("--mesh-config", type=Path, metavar="FILE", help=MESH_CONFIG_HELP)

    val = commands.add_parser(
        "validate",
        help="check the manifests; exit 1 if anything is invalid",
        description="Parse and check every manifest, then translate for each gateway the "
        "Gateways select and a sidecar per Sidecar resource, and print the problems found as JSON (the same report as "
        "/debug/config_status). Exit status 1 when there is any error (warnings alone: 0).",
    )
    val.add_argument("--config-dir", type=Path, required=True)
    val.add_argument("--mesh-config", type=Path, metavar="FILE", help=MESH_CONFIG_HELP)
    return parser


def load_mesh(path: Path | None) -> tuple[MeshSettings, list[ConfigError]]:
    """The mesh config a command runs under: Istio's defaults without --mesh-config."""
    if path is None:
        return MeshSettings(), []
    return load_mesh_config(path)


def load_config(config_dir: Path, mesh_config: Path | None = None) -> ConfigSet:
    config = build_config_set(FileSource(config_dir).load())
    return with_mesh(config, *load_mesh(mesh_config))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level, args.log_json)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "bootstrap":
            return _bootstrap(args)
        if args.command == "translate":
            return _translate(args)
        return _validate(args)
    except (FileNotFoundError, UsageError, SourceUnavailableError) as exc:
        print(f"pilotfish: {exc}", file=sys.stderr)
        return 2
    except MeshConfigError as exc:
        for error in exc.errors:
            print(f"pilotfish: --mesh-config: {error.describe()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def config_source(args: argparse.Namespace) -> ConfigSource:
    """The source `serve` reads: a directory, or the Kubernetes API."""
    if args.config_dir is not None:
        kube_only = {
            "--kubeconfig": args.kubeconfig,
            "--namespace": args.namespaces,
            "--secret-namespace": args.secret_namespaces,
            "--write-status": args.write_status,
        }
        given = [flag for flag, value in kube_only.items() if value]
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --kubernetes")
        return FileSource(args.config_dir)
    from pilotfish.sources.kubernetes import KubernetesSettings, KubernetesSource

    settings = KubernetesSettings(
        kubeconfig=args.kubeconfig,
        namespaces=tuple(args.namespaces) if args.namespaces else None,
        secret_namespaces=tuple(args.secret_namespaces or ("istio-system",)),
        write_status=args.write_status,
    )
    return KubernetesSource(settings)


class UsageError(Exception):
    """A combination of flags that cannot work: exit 2 with the reason."""


def _serve(args: argparse.Namespace) -> int:
    from pilotfish.server.server import ServeOptions, serve_forever

    source = config_source(args)
    mesh, mesh_warnings = load_mesh(args.mesh_config)
    options = ServeOptions(
        mesh=mesh,
        mesh_warnings=tuple(mesh_warnings),
        xds_address=args.xds_address,
        debug_address=args.debug_address,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        max_connection_age=args.max_connection_age,
    )
    asyncio.run(serve_forever(options, source))
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    try:
        options = BootstrapOptions(
            proxy_type=args.type,
            name=args.name,
            namespace=args.namespace,
            labels=args.labels,
            ip=args.ip,
            xds_address=args.xds_address,
            admin_port=args.admin_port,
            admin_socket=args.admin_socket,
            extra_metadata=args.metadata,
            status_port=args.status_port,
            prometheus_port=args.prometheus_port,
            xds_protocol="delta" if args.delta else "sotw",
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    bootstrap = render_bootstrap(options)
    sys.stdout.write(json.dumps(bootstrap, indent=2) + "\n" if args.json else to_yaml(bootstrap))
    return 0


def _translate(args: argparse.Namespace) -> int:
    config = load_config(args.config_dir, args.mesh_config)
    node_id = str(NodeId.for_pod(args.type, args.ip, args.name, args.namespace))
    proxy = Proxy.from_node(node_id, {"LABELS": args.labels, "NAMESPACE": args.namespace})
    sys.stdout.write(to_yaml(translation_to_data(translate(config, proxy), config.errors)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    report = validation_report(load_config(args.config_dir, args.mesh_config))
    print(json.dumps(report, indent=2))
    return 1 if any(e.get("severity", "error") == "error" for e in report) else 0


if __name__ == "__main__":
    sys.exit(main())
