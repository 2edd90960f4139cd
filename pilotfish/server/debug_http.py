"""The debug and health HTTP endpoints (same process as the xDS server), like istiod's.

GET /healthz/ready          200 once the first config is loaded and xDS is serving
GET /metrics                Prometheus text
GET /debug/syncz            per proxy and type: sent, acked, NACKed (istioctl proxy-status);
                            per proxy: routes held back and clusters kept (push ordering)
GET /debug/config_dump?proxy=<node id>   what that proxy is being served (secrets redacted)
GET /debug/config_status    every config problem in force, located by file and field
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pilotfish.server.control_plane import ControlPlane
from pilotfish.translator.dump import message_to_data, redact
from pilotfish.xds.types import short_name


def build_app(
    control_plane: ControlPlane,
    is_ready: Callable[[], bool],
    pending: Callable[[], list[str]] = list,
) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        if is_ready():
            return web.Response(text="ready\n")
        waiting = ", ".join(pending()) or "the first config load"
        return web.Response(status=503, text=f"not ready: waiting for {waiting}\n")

    async def prometheus(_: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def syncz(_: web.Request) -> web.Response:
        return web.json_response([s.to_dict() for s in control_plane.ads.sync_status()])

    async def config_status(_: web.Request) -> web.Response:
        return web.json_response(control_plane.config_status())

    async def config_dump(request: web.Request) -> web.Response:
        proxy_id = request.query.get("proxy", "")
        known = [p.id for p in control_plane.proxies()]
        entry = control_plane.cache.get(proxy_id) if proxy_id else None
        if entry is None:
            return web.json_response(
                {
                    "error": f"no proxy {proxy_id!r} is connected; give ?proxy=<node id>",
                    "proxies": known,
                },
                status=404,
            )
        dump: dict[str, Any] = {"proxy": proxy_id, "resources": {}}
        for type_url, resources in entry.snapshot.resources.items():
            dump["resources"][short_name(type_url)] = {
                "version": entry.version(type_url),
                # Each resource's own version on a delta stream (its content hash).
                "resource_versions": dict(sorted(entry.snapshot.resource_hashes(type_url).items())),
                "resources": [
                    redact(message_to_data(resources[name])) for name in sorted(resources)
                ],
            }
        return web.json_response(dump)

    app = web.Application()
    app.router.add_get("/healthz/ready", ready)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/debug/syncz", syncz)
    app.router.add_get("/debug/config_status", config_status)
    app.router.add_get("/debug/config_dump", config_dump)
    return app
