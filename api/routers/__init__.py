"""HTTP routers, one module per area. ``ALL_ROUTERS`` is what the app factory mounts."""

from fastapi import APIRouter

from api.routers import admin, health, me, metrics, portal

ALL_ROUTERS: list[APIRouter] = [
    health.router,
    metrics.router,
    admin.router,
    me.router,
    portal.router,
]
