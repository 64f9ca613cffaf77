"""The outer layer: the FastAPI application (routers, the auth dependency that turns an API
key into a ``TenantScope``, error handlers, request ids and access logs), the portal page,
Slack endpoints and the ``ragkb`` command line. Nothing imports this package.
"""
