"""Shared core of ragkb: the one typed ``Settings``, the database engine and sessions,
the SQLAlchemy ORM models, the tenancy choke point (``TenantScope``, tenants and API
keys), the error types every layer raises, JSON logging and offline model loading.
It imports nothing else of ours; every other package may import it.
"""
