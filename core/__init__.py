"""Shared core of ragkb: the one typed ``Settings``, the database engine and sessions,
the SQLAlchemy ORM models, the tenancy choke point (``TenantScope``, tenants and API
keys), the error types every layer raises, the passage type that search hits, answer
sources and citations share (``passages``), JSON logging and offline model loading.
It imports nothing else of ours; every other package may import it.
"""
