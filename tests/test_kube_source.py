"""pilotfish.sources.kubernetes against a fake API server that speaks the real wire format.

Every test goes through the `kubernetes` library's own kubeconfig loading (a kubeconfig
written for the fake: plain http, a bearer token the fake checks).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pilotfish.model.configset import build_config_set
from pilotfish.sources.kubernetes import (
    KubernetesConfigError,
    KubernetesSettings,
    KubernetesSource,
)
from pilotfish.sources.kubernetes.informer import Informer
from testsupport.fake_kube import FakeKube
from testsupport.wait import wait_until_async

T = TypeVar("T")

ISTIO = "networking.istio.io/v1beta1"
VS_PATH = "/apis/networking.istio.io/v1beta1/virtualservices"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def obj(
    api_version: str, kind: str, name: str, namespace: str | None = "default", **body: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **body}


def virtual_service(
    name: str = "web", namespace: str = "default", host: str = "web"
) -> dict[str, Any]:
    spec = {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]}
    return obj(ISTIO, "VirtualService", name, namespace, spec=spec)


def namespace(name: str) -> dict[str, Any]:
    return obj("v1", "Namespace", name, None)


def every_kind() -> list[dict[str, Any]]:
    """One valid object of each watched kind."""
    return [
        obj(
            ISTIO,
            "Gateway",
            "gw",
            "istio-system",
            spec={
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
                ],
            },
        ),
        virtual_service(),
        obj(ISTIO, "DestinationRule", "web", spec={"host": "web"}),
        obj(
            ISTIO,
            "ServiceEntry",
            "ext",
            spec={
                "hosts": ["ext.example.com"],
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                "resolution": "DNS",
            },
        ),
        obj(ISTIO, "Sidecar", "default", spec={"egress": [{"hosts": ["./*"]}]}),
        obj(
            "v1",
            "Service",
            "web",
            spec={
                "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        ),
        {
            **obj("discovery.k8s.io/v1", "EndpointSlice", "web-abc"),
            "metadata": {
                "name": "web-abc",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "http", "port": 8080}],
        },
        # Endpoint labels are their Pod's (DestinationRule subsets select by them).
        {
            **obj("v1", "Pod", "web-1"),
            "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
            "status": {"podIP": "10.0.0.1"},
        },
        obj(
            "v1",
            "Secret",
            "cert",
            "istio-system",
            type="kubernetes.io/tls",
            data={"tls.crt": b64("CERT"), "tls.key": b64("KEY")},
        ),
        obj(
            "v1", "Secret", "cert-cacert", "istio-system", type="Opaque", data={"ca.crt": b64("CA")}
        ),
        obj(
            "networking.k8s.io/v1",
            "Ingress",
            "web",
            spec={
                "ingressClassName": "istio",
                "rules": [
                    {
                        "host": "web.example.com",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        ),
        obj(
            "networking.k8s.io/v1",
            "IngressClass",
            "istio",
            None,
            spec={"controller": "istio.io/ingress-controller"},
        ),
        namespace("default"),
    ]


def file_of(o: dict[str, Any]) -> str:
    meta = o["metadata"]
    if meta.get("namespace"):
        return f"kubernetes:{o['kind']}/{meta['namespace']}/{meta['name']}"
    return f"kubernetes:{o['kind']}/{meta['name']}"


def run(coro: Awaitable[T], timeout: float = 15.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(istio_versions=("v1beta1",)) as fake:
        yield fake


def settings_for(kube: FakeKube, tmp_path: Path, **overrides: Any) -> KubernetesSettings:
    return KubernetesSettings(
        kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig"),
        backoff_initial=0.02,
        backoff_max=0.2,
        **overrides,
    )


class Running:
    """A started source, and every count its changes() yielded."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self.changes: list[int] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return sum(self.changes)

    def files(self, kind: str | None = None) -> dict[str, dict[str, Any]]:
        return {
            f.file: f.documents[0].body
            for f in self.source.load()
            if kind is None or f.file.startswith(f"kubernetes:{kind}/")
        }

    def informer(self, kind: str) -> Informer:
        (informer,) = self.source.kinds[kind].informers
        return informer

    async def _collect(self) -> None:
        async for count in self.source.changes(self._stop):
            self.changes.append(count)

    async def quiet_then_sentinel(self, kube: FakeKube, name: str) -> list[int]:
        """Add a Namespace and return what changes() yielded up to and including it: proof
        that nothing else was signalled before (the counts are cumulative)."""
        before = self.total
        kube.add(namespace(name))
        await wait_until_async(lambda: f"kubernetes:Namespace/{name}" in self.files())
        await wait_until_async(lambda: self.total > before)
        return self.changes


@contextlib.asynccontextmanager
async def running(settings: KubernetesSettings, *, synced: bool = True) -> AsyncIterator[Running]:
    source = KubernetesSource(settings)
    await source.start()
    state = Running(source)
    try:
        if synced:
            await asyncio.wait_for(source.wait_synced(), 5)
        state._task = asyncio.create_task(state._collect())
        yield state
    finally:
        state._stop.set()
        if state._task is not None:
            await state._task
        await source.close()


# --- initial sync and discovery ----------------------------------------------------------


def test_initial_sync_of_every_kind(kube: FakeKube, tmp_path: Path) -> None:
    objects = every_kind()
    for o in objects:
        kube.add(o)

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            assert state.source.synced and state.source.pending_kinds() == []
            files = state.files()
            assert sorted(files) == sorted(file_of(o) for o in objects)
            for o in objects:
                body = files[file_of(o)]
                # LIST items come without apiVersion and kind: the source fills them in.
                assert body["apiVersion"] == o["apiVersion"]
                assert body["kind"] == o["kind"]
                assert body["metadata"]["resourceVersion"]
            config = build_config_set(state.source.load())
            assert config.errors == ()
            assert config.get("VirtualService", "default", "web") is not None
            assert config.secret("istio-system", "cert") is not None
            assert config.get("IngressClass", "", "istio") is not None
            assert config.get("Pod", "default", "web-1") is not None
            # Synced means listed; the watch that follows is made a moment later.
            await wait_until_async(
                lambda: kube.requests(VS_PATH, watch=True), message="no watch after the list"
            )

    run(scenario())
    # Discovery found only v1beta1 served, and the watches use it.
    assert kube.count(VS_PATH) == 1
    assert kube.count("/apis/networking.istio.io/v1/virtualservices") == 0
    watch = kube.requests(VS_PATH, watch=True)[0]
    assert watch.query["allowWatchBookmarks"] == "true"
    assert watch.query["resourceVersion"] == str(kube.resource_version)


@pytest.mark.parametrize(
    ("served", "chosen"),
    [
        (("v1alpha3", "v1beta1", "v1"), "v1"),
        (("v1alpha3", "v1beta1"), "v1beta1"),
        (("v1alpha3",), "v1alpha3"),
    ],
)
def test_discovery_prefers_v1_then_v1beta1_then_v1alpha3(
    tmp_path: Path, served: tuple[str, ...], chosen: str
) -> None:
    with FakeKube(istio_versions=served) as kube:
        kube.add({**virtual_service(), "apiVersion": f"networking.istio.io/{chosen}"})

        async def scenario() -> None:
            async with running(settings_for(kube, tmp_path)) as state:
                (body,) = state.files("VirtualService").values()
                assert body["apiVersion"] == f"networking.istio.io/{chosen}"
                assert state.source.kinds["Gateway"].version == chosen

        run(scenario())


def test_istio_kinds_stay_pending_without_their_crds(tmp_path: Path) -> None:
    with FakeKube(istio_versions=()) as kube:

        async def scenario() -> None:
            async with running(settings_for(kube, tmp_path), synced=False) as state:
                await wait_until_async(lambda: kube.count("/apis/networking.istio.io") >= 5)
                await wait_until_async(lambda: "Service" not in state.source.pending_kinds())
                assert not state.source.synced
                assert state.source.pending_kinds() == [
                    "Gateway",
                    "VirtualService",
                    "DestinationRule",
                    "ServiceEntry",
                    "Sidecar",
                ]

        run(scenario())


def test_start_without_a_kubeconfig_fails_at_once(tmp_path: Path) -> None:
    source = KubernetesSource(KubernetesSettings(kubeconfig=tmp_path / "missing"))
    with pytest.raises(KubernetesConfigError, match="does not exist"):
        run(source.start())


def test_wait_synced_waits_while_a_list_keeps_failing(kube: FakeKube, tmp_path: Path) -> None:
    kube.add(obj("v1", "Service", "web", spec={"ports": [{"port": 80}]}))
    kube.fail("/api/v1/services", 500, watch=False)

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path), synced=False) as state:
            source = state.source
            await wait_until_async(lambda: kube.count("/api/v1/services") >= 3)  # retried
            await wait_until_async(lambda: source.pending_kinds() == ["Service"])
            waiter = asyncio.ensure_future(source.wait_synced())
            await asyncio.sleep(0)
            assert not waiter.done() and not source.synced
            kube.recover()
            await asyncio.wait_for(waiter, 5)
            assert source.synced and list(state.files("Service")) == [
                "kubernetes:Service/default/web"
            ]

    run(scenario())


def test_wrong_token_is_retried_not_synced(kube: FakeKube, tmp_path: Path) -> None:
    settings = KubernetesSettings(
        kubeconfig=kube.write_kubeconfig(tmp_path / "kubeconfig", token="wrong"),
        backoff_initial=0.02,
        backoff_max=0.1,
    )

    async def scenario() -> None:
        async with running(settings, synced=False) as state:
            await wait_until_async(lambda: kube.count("/api/v1/namespaces") >= 2)
            assert "Namespace" in state.source.pending_kinds()

    run(scenario())
    assert kube.requests("/api/v1/namespaces")[0].query["limit"] == "500"


def test_list_pages_are_followed(kube: FakeKube, tmp_path: Path) -> None:
    for i in range(5):
        kube.add(virtual_service(f"vs-{i}"))

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path, page_size=2)) as state:
            assert len(state.files("VirtualService")) == 5

    run(scenario())
    pages = kube.requests(VS_PATH, watch=False)
    assert [("continue" in p.query) for p in pages] == [False, True, True]
    assert all(p.query["limit"] == "2" for p in pages)


# --- watch events ------------------------------------------------------------------------


def _updated(o: dict[str, Any]) -> dict[str, Any]:
    changed = copy.deepcopy(o)
    changed["metadata"].setdefault("labels", {})["changed"] = "yes"
    return changed


async def _add_update_delete(state: Running, kube: FakeKube, o: dict[str, Any]) -> None:
    name = file_of(o)
    before = state.total
    kube.add(o)
    await wait_until_async(lambda: name in state.files(), message=f"added {name}")
    await wait_until_async(lambda: state.total == before + 1)

    kube.update(_updated(o))
    await wait_until_async(
        lambda: state.files().get(name, {}).get("metadata", {}).get("labels"),
        message=f"updated {name}",
    )
    await wait_until_async(lambda: state.total == before + 2)

    kube.delete(o)
    await wait_until_async(lambda: name not in state.files(), message=f"deleted {name}")
    await wait_until_async(lambda: state.total == before + 3)


def test_add_update_delete_of_each_kind(kube: FakeKube, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            assert state.files() == {}
            for o in every_kind():
                await _add_update_delete(state, kube, o)

    run(scenario())
    # All of that through the first watch of each kind: nothing was relisted.
    assert kube.count(VS_PATH) == 1
    assert kube.count("/api/v1/namespaces") == 1


def test_bookmark_moves_the_resource_version_the_next_watch_starts_from(
    kube: FakeKube, tmp_path: Path
) -> None:
    kube.add(virtual_service())

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            vs = state.informer("VirtualService")
            listed_at = vs.resource_version
            kube.add(namespace("other"))  # the global resourceVersion moves on
            await wait_until_async(lambda: "kubernetes:Namespace/other" in state.files())
            assert vs.resource_version == listed_at
            bookmark = kube.send_bookmark()
            await wait_until_async(lambda: vs.resource_version == str(bookmark))
            kube.drop_connections()
            await wait_until_async(lambda: kube.count(VS_PATH, watch=True) == 2)
            assert state.total == 1  # the Namespace; a bookmark is no change

    run(scenario())
    second = kube.requests(VS_PATH, watch=True)[1]
    assert second.query["resourceVersion"] == str(kube.resource_version)
    assert kube.count(VS_PATH) == 1  # resumed, not relisted


def test_dropped_connection_resumes_the_watch_from_the_last_version(
    kube: FakeKube, tmp_path: Path
) -> None:
    kube.add(virtual_service("a"))

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            kube.update({**virtual_service("a", host="other")})
            await wait_until_async(
                lambda: (
                    state.informer("VirtualService").resource_version == str(kube.resource_version)
                )
            )
            seen = state.informer("VirtualService").resource_version
            kube.drop_connections()
            await wait_until_async(lambda: kube.count(VS_PATH, watch=True) == 2)
            assert kube.requests(VS_PATH, watch=True)[1].query["resourceVersion"] == seen
            await wait_until_async(lambda: kube.open_watches(VS_PATH) == 1)
            kube.add(virtual_service("b"))
            await wait_until_async(lambda: "kubernetes:VirtualService/default/b" in state.files())

    run(scenario())
    assert kube.count(VS_PATH) == 1


@pytest.mark.parametrize("as_http_status", [False, True], ids=["error-event", "http-410"])
def test_expired_watch_relists_and_applies_the_difference(
    kube: FakeKube, tmp_path: Path, as_http_status: bool
) -> None:
    kept, gone, changed = (
        virtual_service("kept"),
        virtual_service("gone"),
        virtual_service("changed"),
    )
    for o in (kept, gone, changed):
        kube.add(o)

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            # The watch goes down and cannot come back while things change...
            kube.fail(VS_PATH, 503, watch=True)
            kube.drop_connections()
            await wait_until_async(lambda: kube.count(VS_PATH, watch=True) >= 3)
            kube.delete(gone)
            kube.add(virtual_service("new"))
            kube.update(virtual_service("changed", host="elsewhere"))
            # ...and by the time it does, its resourceVersion has been compacted away.
            kube.expire(as_http_status=as_http_status)
            kube.recover()
            await wait_until_async(lambda: kube.count(VS_PATH) == 2)
            await wait_until_async(
                lambda: (
                    sorted(state.files("VirtualService"))
                    == [
                        "kubernetes:VirtualService/default/changed",
                        "kubernetes:VirtualService/default/kept",
                        "kubernetes:VirtualService/default/new",
                    ]
                )
            )
            body = state.files()["kubernetes:VirtualService/default/changed"]
            assert body["spec"]["hosts"] == ["elsewhere"]
            await wait_until_async(lambda: state.total == 3)  # one add, one update, one delete
            # The watch continues from the relist's resourceVersion.
            await wait_until_async(lambda: kube.open_watches(VS_PATH) == 1)
            last = kube.requests(VS_PATH, watch=True)[-1]
            assert (
                last.query["resourceVersion"] == state.informer("VirtualService").resource_version
            )

    run(scenario())


def test_relist_that_finds_nothing_new_signals_nothing(kube: FakeKube, tmp_path: Path) -> None:
    for o in every_kind():
        kube.add(o)

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            kube.add(namespace("moved-on"))  # every other informer is now behind
            await wait_until_async(lambda: state.total == 1)
            kube.expire()
            kube.drop_connections()
            behind = [
                informer
                for name, kind in state.source.kinds.items()
                if name != "Namespace"
                for informer in kind.informers
            ]
            await wait_until_async(lambda: all(i.lists == 2 for i in behind))
            assert state.informer("Namespace").lists == 1
            assert await state.quiet_then_sentinel(kube, "sentinel") == [1, 1]

    run(scenario())


def test_periodic_resync_signals_only_real_differences(kube: FakeKube, tmp_path: Path) -> None:
    kube.add(virtual_service())

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path, resync_interval=0.1)) as state:
            await wait_until_async(lambda: kube.count(VS_PATH) >= 3)
            assert await state.quiet_then_sentinel(kube, "sentinel") == [1]

    run(scenario())


# --- what reaches the model --------------------------------------------------------------


def test_bad_object_is_a_config_error_and_the_last_valid_version_stays(
    kube: FakeKube, tmp_path: Path
) -> None:
    kube.add(virtual_service())

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            good = build_config_set(state.source.load())
            assert good.errors == ()
            bad = virtual_service()
            bad["spec"]["bogus"] = True
            kube.update(bad)
            await wait_until_async(
                lambda: "bogus" in state.files()["kubernetes:VirtualService/default/web"]["spec"]
            )
            config = build_config_set(state.source.load(), previous=good)
            (error,) = config.errors
            assert error.file == "kubernetes:VirtualService/default/web"
            assert error.document == 0
            assert (error.kind, error.namespace, error.name) == ("VirtualService", "default", "web")
            assert "bogus" in error.message and "last valid version" in error.message
            kept = config.get("VirtualService", "default", "web")
            assert kept is good.get("VirtualService", "default", "web")

    run(scenario())


def test_secrets_only_of_tls_and_opaque_types_in_the_secret_namespaces(
    kube: FakeKube, tmp_path: Path
) -> None:
    for ns in ("istio-system", "default"):
        kube.add(obj("v1", "Secret", "tls", ns, type="kubernetes.io/tls", data={}))
        kube.add(obj("v1", "Secret", "opaque", ns, type="Opaque", data={}))
        kube.add(obj("v1", "Secret", "token", ns, type="kubernetes.io/service-account-token"))
        kube.add(obj("v1", "Secret", "pull", ns, type="kubernetes.io/dockerconfigjson"))

    async def secrets(**overrides: Any) -> list[str]:
        async with running(settings_for(kube, tmp_path, **overrides)) as state:
            return sorted(state.files("Secret"))

    assert run(secrets()) == [
        "kubernetes:Secret/istio-system/opaque",
        "kubernetes:Secret/istio-system/tls",
    ]
    assert run(secrets(secret_namespaces=("default", "istio-system"))) == [
        "kubernetes:Secret/default/opaque",
        "kubernetes:Secret/default/tls",
        "kubernetes:Secret/istio-system/opaque",
        "kubernetes:Secret/istio-system/tls",
    ]
    selectors = {
        r.query.get("fieldSelector") for r in kube.requests(method="GET") if "secrets" in r.path
    }
    assert selectors == {"type=kubernetes.io/tls", "type=Opaque"}
    assert not kube.requests("/api/v1/secrets")  # never all namespaces' Secrets


def test_namespace_restriction(kube: FakeKube, tmp_path: Path) -> None:
    for ns in ("a", "b", "c"):
        kube.add(namespace(ns))
        kube.add(virtual_service("web", ns))

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path, namespaces=("a", "b"))) as state:
            assert sorted(state.files("VirtualService")) == [
                "kubernetes:VirtualService/a/web",
                "kubernetes:VirtualService/b/web",
            ]
            assert len(state.files("Namespace")) == 3  # cluster-scoped: all of them
            kube.add(virtual_service("new", "c"))
            kube.add(virtual_service("new", "b"))
            await wait_until_async(lambda: "kubernetes:VirtualService/b/new" in state.files())
            assert "kubernetes:VirtualService/c/new" not in state.files()

    run(scenario())
    assert kube.count("/apis/networking.istio.io/v1beta1/namespaces/a/virtualservices") == 1
    assert kube.count("/apis/networking.istio.io/v1beta1/namespaces/b/virtualservices") == 1
    assert kube.count(VS_PATH) == 0


# --- status write-back -------------------------------------------------------------------

STATUS_PATH = "/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices/web/status"


def test_status_write_back(kube: FakeKube, tmp_path: Path) -> None:
    bad = virtual_service()
    bad["spec"]["bogus"] = True
    kube.add(bad)
    kube.add(obj(ISTIO, "DestinationRule", "web", spec={"host": "web"}))

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path, write_status=True)) as state:
            source = state.source
            problems = list(build_config_set(source.load()).errors)
            await source.write_status(problems)
            (patch,) = kube.patches()
            assert patch.path == STATUS_PATH
            assert patch.content_type == "application/merge-patch+json"
            (message,) = patch.body["status"]["validationMessages"]
            assert message["type"] == {"code": "IST0106", "name": "SchemaValidationError"}
            assert message["level"] == "ERROR"
            assert message["documentationUrl"].endswith("/ist0106/")
            assert "bogus" in message["description"]
            assert patch.body == {"status": {"validationMessages": [message]}}

            # Unchanged problems are not written again, before or after the watch brings
            # the new status back; and our own status write is no config change.
            await source.write_status(problems)
            await wait_until_async(
                lambda: state.files()["kubernetes:VirtualService/default/web"].get("status")
            )
            await source.write_status(problems)
            assert len(kube.patches()) == 1
            assert await state.quiet_then_sentinel(kube, "sentinel") == [1]

            # Fixed: the messages are cleared, once.
            kube.update(virtual_service())
            await wait_until_async(
                lambda: (
                    "bogus" not in state.files()["kubernetes:VirtualService/default/web"]["spec"]
                )
            )
            problems = list(build_config_set(source.load()).errors)
            assert problems == []
            await source.write_status(problems)
            await source.write_status(problems)
            assert [p.body for p in kube.patches()][1:] == [{"status": {"validationMessages": []}}]
            await wait_until_async(
                lambda: (
                    kube.get("VirtualService", "default", "web")["status"]  # type: ignore[index]
                    == {"validationMessages": []}
                )
            )

    run(scenario())


def test_no_status_writes_unless_enabled(kube: FakeKube, tmp_path: Path) -> None:
    bad = virtual_service()
    bad["spec"]["bogus"] = True
    kube.add(bad)

    async def scenario() -> None:
        async with running(settings_for(kube, tmp_path)) as state:
            await state.source.write_status(list(build_config_set(state.source.load()).errors))

    run(scenario())
    assert kube.patches() == []
