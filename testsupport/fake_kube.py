"""A fake Kubernetes API server for tests: the real wire format, on 127.0.0.1, in a thread.

It speaks what a client of the API actually sees, so the Kubernetes source is tested
against the protocol rather than against a mock of our own code:

- discovery (`/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`), with
  the versions of `networking.istio.io` chosen by the test (e.g. only v1beta1);
- LIST: `{"kind": "<Kind>List", "metadata": {"resourceVersion"}, "items": [...]}` with the
  items lacking kind/apiVersion, as the real API sends them; `limit`/`continue` paging;
  `fieldSelector` (`type=kubernetes.io/tls`, `metadata.name!=x`, ...);
- WATCH: a chunked stream of `{"type": ..., "object": ...}` lines starting after the given
  resourceVersion, BOOKMARKs when asked for, an ERROR event with a 410 `Status` (or an
  HTTP 410) for an expired resourceVersion, `timeoutSeconds`;
- PATCH of `.../status` with a JSON merge patch, recorded;
- one global, increasing resourceVersion, bumped by every change.

The server runs its own event loop in its own thread, so synchronous tests and
in-process asyncio servers can both use it; the test controls (`add`, `update`, `delete`,
`send_bookmark`, `expire`, `drop_connections`, `fail`) are plain thread-safe methods.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import itertools
import json
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

ISTIO_GROUP = "networking.istio.io"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class FakeKubeTLS:
    """Serve https with this certificate; with client_ca_pem, also accept (instead of the
    bearer token) a client certificate it signed, as an API server does."""

    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes  # what the kubeconfig's certificate-authority-data says
    client_ca_pem: bytes | None = None


@dataclass(frozen=True)
class Resource:
    """One resource type the fake serves."""

    group: str  # "" for the core group
    plural: str
    kind: str
    namespaced: bool
    versions: tuple[str, ...]
    has_status: bool = True

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version


def default_resources(istio_versions: tuple[str, ...]) -> list[Resource]:
    istio = [
        ("gateways", "Gateway"),
        ("virtualservices", "VirtualService"),
        ("destinationrules", "DestinationRule"),
        ("serviceentries", "ServiceEntry"),
        ("sidecars", "Sidecar"),
        ("workloadentries", "WorkloadEntry"),
    ]
    return [
        Resource("", "services", "Service", True, ("v1",)),
        Resource("", "endpoints", "Endpoints", True, ("v1",), has_status=False),
        Resource("", "secrets", "Secret", True, ("v1",), has_status=False),
        Resource("", "namespaces", "Namespace", False, ("v1",)),
        Resource("", "pods", "Pod", True, ("v1",)),
        Resource("", "configmaps", "ConfigMap", True, ("v1",), has_status=False),
        Resource("discovery.k8s.io", "endpointslices", "EndpointSlice", True, ("v1",), False),
        Resource("networking.k8s.io", "ingresses", "Ingress", True, ("v1",)),
        Resource("networking.k8s.io", "ingressclasses", "IngressClass", False, ("v1",), False),
        *(Resource(ISTIO_GROUP, p, k, True, istio_versions) for p, k in istio),
    ]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    content_type: str = ""

    @property
    def watch(self) -> bool:
        return self.query.get("watch") in ("1", "true")


@dataclass
class _Event:
    rv: int
    type: str
    resource: Resource
    obj: dict[str, Any]  # with kind; apiVersion set per watch (the version it asked for)


@dataclass
class _Watcher:
    resource: Resource
    version: str
    namespace: str | None
    selector: list[tuple[str, str, str]]
    bookmarks: bool
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)

    def wants(self, resource: Resource, obj: Mapping[str, Any]) -> bool:
        if resource != self.resource:
            return False
        if self.namespace is not None and _namespace_of(obj) != self.namespace:
            return False
        return _matches(obj, self.selector)

    def put(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop is already closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class ApiFailure(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """The `Status` object the API answers failures with (and sends in a watch ERROR)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class FakeKube:
    """A fake API server. `start()` (or `with FakeKube() as kube:`), then `url`."""

    def __init__(
        self,
        istio_versions: tuple[str, ...] = ("v1", "v1beta1", "v1alpha3"),
        token: str = "fake-token",
        resources: list[Resource] | None = None,
        tls: FakeKubeTLS | None = None,
    ) -> None:
        self.token = token
        self.tls = tls
        self.istio_versions = istio_versions
        self.resources = resources or default_resources(istio_versions)
        self._lock = threading.RLock()
        self._rv = 100
        self._objects: dict[tuple[Resource, str, str], dict[str, Any]] = {}
        self._events: list[_Event] = []
        self._oldest_rv = 0
        self._expire_as_http = False
        self._watchers: list[_Watcher] = []
        self._requests: list[RecordedRequest] = []
        self._failures: dict[tuple[str, bool | None], int] = {}
        self._continues: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._uids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> FakeKube:
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to start()'s caller
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-kube", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake Kubernetes API did not start")
        if errors:
            raise errors[0]
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl_context())
        await site.start()
        server = site._server  # aiohttp has no public accessor for the bound port
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:  # the ssl module loads keys from files only
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(self.tls.cert_pem)
            key.write_bytes(self.tls.key_pem)
            context.load_cert_chain(cert, key)
        if self.tls.client_ca_pem:
            context.load_verify_locations(cadata=self.tls.client_ca_pem.decode())
            context.verify_mode = ssl.CERT_OPTIONAL
        return context

    def stop(self) -> None:
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return
        self.drop_connections()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._runner = None

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(
        self,
        path: Path,
        *,
        token: str | None = None,
        client_cert: tuple[bytes, bytes] | None = None,
    ) -> Path:
        """A kubeconfig for this server, as kubectl writes one: a bearer token (`token`, by
        default the one the fake accepts), or with client_cert (PEM cert, key) that instead;
        over https, the CA as certificate-authority-data."""
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls is not None:
            cluster["certificate-authority-data"] = _b64(self.tls.ca_pem)
        user: dict[str, Any]
        if client_cert is not None:
            user = {
                "client-certificate-data": _b64(client_cert[0]),
                "client-key-data": _b64(client_cert[1]),
            }
        else:
            user = {"token": token or self.token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "tester", "user": user}],
            "contexts": [
                {"name": "fake", "context": {"cluster": "fake", "user": "tester"}},
            ],
            "current-context": "fake",
            "preferences": {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    # --- test controls: objects ------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        with self._lock:
            return self._rv

    def add(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create an object (apiVersion and kind say which resource); returns it as stored."""
        resource = self._resource_for(obj)
        with self._lock:
            stored = copy.deepcopy(dict(obj))
            meta = stored.setdefault("metadata", {})
            if resource.namespaced:
                meta.setdefault("namespace", "default")
            else:
                meta.pop("namespace", None)
            key = self._key(resource, stored)
            if key in self._objects:
                raise ValueError(f"{resource.kind} {key[1]}/{key[2]} already exists")
            meta.setdefault("uid", f"00000000-0000-0000-0000-{next(self._uids):012d}")
            meta.setdefault("creationTimestamp", _now())
            meta["generation"] = 1
            self._store(resource, key, stored, "ADDED")
            return copy.deepcopy(stored)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace an existing object (its metadata's uid and creationTimestamp are kept)."""
        resource = self._resource_for(obj)
        with self._lock:
            stored = copy.deepcopy(dict(obj))
            meta = stored.setdefault("metadata", {})
            if resource.namespaced:
                meta.setdefault("namespace", "default")
            key = self._key(resource, stored)
            old = self._objects.get(key)
            if old is None:
                raise KeyError(f"{resource.kind} {key[1]}/{key[2]} does not exist")
            for kept in ("uid", "creationTimestamp"):
                meta[kept] = old["metadata"][kept]
            meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
            if "status" in old and "status" not in stored:
                stored["status"] = copy.deepcopy(old["status"])
            self._store(resource, key, stored, "MODIFIED")
            return copy.deepcopy(stored)

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace."""
        with self._lock:
            resource = self._resource_for(obj)
            key = self._key(resource, {"metadata": {"namespace": "default", **obj["metadata"]}})
            exists = key in self._objects
        return self.update(obj) if exists else self.add(obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        """Delete the object named by obj's apiVersion/kind/metadata."""
        resource = self._resource_for(obj)
        with self._lock:
            meta = dict(obj.get("metadata") or {})
            if resource.namespaced:
                meta.setdefault("namespace", "default")
            key = self._key(resource, {"metadata": meta})
            old = self._objects.pop(key)
            self._rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._emit(_Event(self._rv, "DELETED", resource, gone))

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self._lock:
            for (resource, ns, nm), obj in self._objects.items():
                if resource.kind == kind and nm == name and ns == (namespace or ""):
                    return copy.deepcopy(obj)
        return None

    def _store(
        self, resource: Resource, key: tuple[Resource, str, str], obj: dict[str, Any], kind: str
    ) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        obj.pop("apiVersion", None)
        obj.pop("kind", None)
        self._objects[key] = obj
        self._emit(_Event(self._rv, kind, resource, copy.deepcopy(obj)))

    def _emit(self, event: _Event) -> None:
        self._events.append(event)
        for watcher in self._watchers:
            if watcher.wants(event.resource, event.obj):
                watcher.put(("event", event))

    # --- test controls: the protocol -------------------------------------------------

    def send_bookmark(self) -> int:
        """A BOOKMARK at the current resourceVersion to every watch that asked for them."""
        with self._lock:
            for watcher in self._watchers:
                if watcher.bookmarks:
                    watcher.put(("bookmark", self._rv))
            return self._rv

    def expire(self, before_rv: int | None = None, *, as_http_status: bool = False) -> None:
        """Watches from a resourceVersion older than before_rv (default: the current one)
        are answered with an ERROR event carrying a 410 Status (or, with as_http_status,
        an HTTP 410), as after etcd compaction. LISTs keep working."""
        with self._lock:
            self._oldest_rv = self._rv if before_rv is None else before_rv
            self._expire_as_http = as_http_status

    def drop_connections(self) -> None:
        """Abruptly close every open watch stream (no terminating chunk)."""
        with self._lock:
            for watcher in self._watchers:
                watcher.put(("drop", None))

    def fail(self, path: str, status: int | None = 500, *, watch: bool | None = None) -> None:
        """Answer requests for `path` (exactly) with an HTTP error; watch=True/False limits
        it to watch or list requests. status=None lifts it."""
        with self._lock:
            if status is None:
                self._failures.pop((path, watch), None)
            else:
                self._failures[(path, watch)] = status

    def recover(self, path: str | None = None) -> None:
        """Lift the failures set for path (or all of them)."""
        with self._lock:
            for key in [k for k in self._failures if path is None or k[0] == path]:
                del self._failures[key]

    # --- what the clients did --------------------------------------------------------

    def requests(
        self, path: str | None = None, *, watch: bool | None = None, method: str | None = None
    ) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self._requests
                if (path is None or r.path == path)
                and (watch is None or r.watch == watch)
                and (method is None or r.method == method)
            ]

    def count(self, path: str, *, watch: bool = False) -> int:
        """How many LISTs (or, with watch=True, watch requests) were received for path."""
        return len(self.requests(path, watch=watch, method="GET"))

    def patches(self, path: str | None = None) -> list[RecordedRequest]:
        return self.requests(path, method="PATCH")

    def open_watches(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for w in self._watchers if path is None or _watch_path(w) == path)

    # --- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        recorded = RecordedRequest(
            request.method, request.path, dict(request.query), body, request.content_type
        )
        with self._lock:
            self._requests.append(recorded)
            failure = self._failures.get((request.path, recorded.watch)) or self._failures.get(
                (request.path, None)
            )
        if not self._authenticated(request):
            return _status(401, "Unauthorized", "Unauthorized")
        if failure:
            return _status(failure, "InternalError", f"injected failure {failure}")
        try:
            return await self._route(request, recorded)
        except ApiFailure as exc:
            return _status(exc.code, exc.reason, exc.message)

    def _authenticated(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return True
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        return bool(peer)  # only verified client certificates get here

    async def _route(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["api"]:
            return web.json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                    ],
                }
            )
        if parts == ["apis"]:
            return web.json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [self._group(g) for g in self._groups()],
                }
            )
        if len(parts) == 2 and parts[0] == "apis":
            if parts[1] not in self._groups():
                raise ApiFailure(
                    404, "NotFound", "the server could not find the requested resource"
                )
            return web.json_response(
                {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1])}
            )
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        served = [r for r in self.resources if r.group == group and version in r.versions]
        if not served:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return web.json_response(self._resource_list(group, version, served))
        resource, namespace, name, sub = self._locate(served, rest)
        if request.method == "GET":
            if name is not None:
                return web.json_response(self._get_one(resource, version, namespace, name))
            if rec.watch:
                return await self._watch(request, resource, version, namespace)
            return web.json_response(self._list(resource, version, namespace, request.query))
        if request.method == "PATCH" and name is not None and sub == "status":
            if not resource.has_status:
                raise ApiFailure(
                    404, "NotFound", "the server could not find the requested resource"
                )
            if request.content_type != MERGE_PATCH:
                raise ApiFailure(
                    415, "UnsupportedMediaType", "the body of the request was in an unknown format"
                )
            return web.json_response(
                self._patch_status(resource, version, namespace or "", name, rec.body)
            )
        raise ApiFailure(405, "MethodNotAllowed", f"{request.method} is not supported here")

    def _groups(self) -> list[str]:
        return list(dict.fromkeys(r.group for r in self.resources if r.group))

    def _group(self, group: str) -> dict[str, Any]:
        versions = list(
            dict.fromkeys(v for r in self.resources if r.group == group for v in r.versions)
        )
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def _resource_list(self, group: str, version: str, served: list[Resource]) -> dict[str, Any]:
        resources: list[dict[str, Any]] = []
        for r in served:
            verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
            resources.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": verbs,
                }
            )
            if r.has_status:
                resources.append(
                    {
                        "name": f"{r.plural}/status",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _locate(
        self, served: list[Resource], rest: list[str]
    ) -> tuple[Resource, str | None, str | None, str | None]:
        """(resource, namespace, name, subresource) from the path after the group version."""
        by_plural = {r.plural: r for r in served}
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in by_plural:
            namespace, rest = rest[1], rest[2:]
        resource = by_plural.get(rest[0])
        if resource is None or len(rest) > 3:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not resource.namespaced:
            raise ApiFailure(404, "NotFound", f"{resource.plural} is not namespaced")
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        return resource, namespace, name, sub

    def _get_one(
        self, resource: Resource, version: str, namespace: str | None, name: str
    ) -> dict[str, Any]:
        with self._lock:
            obj = self._objects.get((resource, namespace or "", name))
            if obj is None:
                raise ApiFailure(404, "NotFound", f'{resource.plural} "{name}" not found')
            return _with_type(obj, resource, version)

    def _list(
        self,
        resource: Resource,
        version: str,
        namespace: str | None,
        query: Mapping[str, str],
    ) -> dict[str, Any]:
        limit = int(query.get("limit") or 0)
        token = query.get("continue")
        with self._lock:
            if token:
                found = self._continues.get(token)
                if found is None or found[0] < self._oldest_rv:
                    raise ApiFailure(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a "
                        "consistent list result. You can start a new list without the "
                        "continue parameter.",
                    )
                list_rv, items = found
            else:
                selector = _parse_selector(query.get("fieldSelector", ""))
                list_rv = self._rv
                items = [
                    copy.deepcopy(obj)
                    for (r, ns, _), obj in sorted(
                        self._objects.items(), key=lambda kv: (kv[0][1], kv[0][2])
                    )
                    if r == resource
                    and (namespace is None or ns == namespace)
                    and _matches(obj, selector)
                ]
            meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
            if limit and len(items) > limit:
                rest_token = base64.urlsafe_b64encode(
                    f"{list_rv}:{len(self._continues)}".encode()
                ).decode()
                self._continues[rest_token] = (list_rv, items[limit:])
                meta["continue"] = rest_token
                meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version(version),
            "metadata": meta,
            "items": items,
        }

    def _patch_status(
        self, resource: Resource, version: str, namespace: str, name: str, patch: Any
    ) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise ApiFailure(400, "BadRequest", "the patch is not a JSON object")
        with self._lock:
            key = (resource, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise ApiFailure(404, "NotFound", f'{resource.plural} "{name}" not found')
            merged = copy.deepcopy(old)
            # Only status may change through the status subresource.
            status = _merge_patch(merged.get("status", {}), patch.get("status", {}))
            merged["status"] = status
            self._store(resource, key, merged, "MODIFIED")
            return _with_type(merged, resource, version)

    async def _watch(
        self, request: web.Request, resource: Resource, version: str, namespace: str | None
    ) -> web.StreamResponse:
        query = request.query
        since_text = query.get("resourceVersion", "")
        since = int(since_text) if since_text.isdigit() else 0
        timeout = float(query.get("timeoutSeconds") or 1800)
        watcher = _Watcher(
            resource,
            version,
            namespace,
            _parse_selector(query.get("fieldSelector", "")),
            query.get("allowWatchBookmarks") in ("true", "1"),
            asyncio.get_running_loop(),
        )
        with self._lock:
            expired = since != 0 and since < self._oldest_rv
            if expired and self._expire_as_http:
                raise ApiFailure(
                    410, "Expired", f"too old resource version: {since} ({self._oldest_rv})"
                )
            if since == 0:  # "any": the current state as ADDED events, then changes
                backlog = [
                    _Event(self._rv, "ADDED", resource, copy.deepcopy(obj))
                    for (r, _, _), obj in self._objects.items()
                    if watcher.wants(r, obj)
                ]
            else:
                backlog = [
                    e for e in self._events if e.rv > since and watcher.wants(e.resource, e.obj)
                ]
            if not expired:
                self._watchers.append(watcher)

        response = web.StreamResponse(status=200, headers={"Content-Type": JSON})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            if expired:
                error = status_body(410, "Expired", "too old resource version")
                await response.write(_line({"type": "ERROR", "object": error}))
                await response.write_eof()
                return response
            for event in backlog:
                await response.write(_line(self._event_json(event, watcher)))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    what, item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if what == "drop":
                    transport = request.transport
                    if transport is not None:
                        transport.abort()
                    raise asyncio.CancelledError
                if what == "bookmark":
                    bookmark = {
                        "kind": resource.kind,
                        "apiVersion": resource.api_version(version),
                        "metadata": {"resourceVersion": str(item)},
                    }
                    await response.write(_line({"type": "BOOKMARK", "object": bookmark}))
                else:
                    await response.write(_line(self._event_json(item, watcher)))
            await response.write_eof()
            return response
        finally:
            with self._lock:
                if watcher in self._watchers:
                    self._watchers.remove(watcher)

    @staticmethod
    def _event_json(event: _Event, watcher: _Watcher) -> dict[str, Any]:
        return {
            "type": event.type,
            "object": _with_type(event.obj, event.resource, watcher.version),
        }

    # --- helpers ---------------------------------------------------------------------

    def _resource_for(self, obj: Mapping[str, Any]) -> Resource:
        api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
        group = api_version.rpartition("/")[0]
        for r in self.resources:
            if r.kind == kind and r.group == group:
                return r
        raise ValueError(f"the fake serves no {kind} in group {group!r}")

    @staticmethod
    def _key(resource: Resource, obj: Mapping[str, Any]) -> tuple[Resource, str, str]:
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "") if resource.namespaced else ""
        return resource, namespace, str(meta["name"])


def _with_type(obj: Mapping[str, Any], resource: Resource, version: str) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "apiVersion": resource.api_version(version),
        **copy.deepcopy(obj),
    }


def _watch_path(w: _Watcher) -> str:
    base = f"/apis/{w.resource.group}/{w.version}" if w.resource.group else "/api/v1"
    ns = f"/namespaces/{w.namespace}" if w.namespace else ""
    return f"{base}{ns}/{w.resource.plural}"


def _namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _parse_selector(text: str) -> list[tuple[str, str, str]]:
    terms = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        for op in ("!=", "==", "="):
            if op in term:
                name, _, value = term.partition(op)
                terms.append((name.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise ApiFailure(400, "BadRequest", f"invalid field selector {term!r}")
    return terms


def _matches(obj: Mapping[str, Any], selector: list[tuple[str, str, str]]) -> bool:
    for path, op, value in selector:
        current: Any = obj
        for part in path.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        actual = "" if current is None else str(current)
        if (actual == value) != (op == "="):
            return False
    return True


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _line(event: Mapping[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(status_body(code, reason, message), status=code)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextlib.contextmanager
def running_fake_kube(**kwargs: Any) -> Iterator[FakeKube]:
    """`with running_fake_kube(istio_versions=("v1beta1",)) as kube:`."""
    kube = FakeKube(**kwargs).start()
    try:
        yield kube
    finally:
        kube.stop()
