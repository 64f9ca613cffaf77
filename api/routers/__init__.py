"""HTTP routers, one module per area. ``ALL_ROUTERS`` is what the app factory mounts."""

from fastapi import APIRouter

from api.routers import admin, documents, eval, health, me, metrics, portal, query, search, slack

ALL_ROUTERS: list[APIRouter] = [
    health.router,
    metrics.router,
    admin.router,
    me.router,
    documents.router,
    portal.router,
    query.router,
    slack.router,
    search.router,
    eval.router,
]
