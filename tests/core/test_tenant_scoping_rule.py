"""The tenancy rule, enforced: tenant ids are compared by hand only in ``core/tenancy.py``.

Everywhere else a tenant condition goes through ``scoped``, ``scoped_update``,
``scoped_delete``, ``scoped_count``, ``get_owned`` or ``TenantScope.owns``, so that one
module decides what "this tenant's" means. The check walks the syntax tree (a ``==`` or
``!=`` with an operand ``<anything>.tenant_id``), so strings, comments and keyword
arguments such as ``tenant_id=scope.tenant_id`` do not count.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "tasks", "services", "ingest", "retrieval", "generation", "api", "eval")
CHOKE_POINT = "core/tenancy.py"

# (file, comparison as ast.unparse writes it) -> why it cannot use a helper. Keyed by source
# rather than line number so that unrelated edits above it do not break the test.
ALLOWED: dict[tuple[str, str], str] = {
    ("ingest/backup.py", "Tenant.id == scope.tenant_id"): (
        "the tenants table itself: its primary key is the tenant id, it has no tenant_id column"
    ),
}


@dataclass(frozen=True)
class Comparison:
    path: str
    line: int
    source: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source}"


def _is_tenant_id(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "tenant_id"


def tenant_comparisons(source: str, path: str = "<string>") -> list[Comparison]:
    """Every ``==`` / ``!=`` in ``source`` that has a ``<x>.tenant_id`` operand."""
    found = []
    for node in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            if isinstance(op, ast.Eq | ast.NotEq) and (_is_tenant_id(left) or _is_tenant_id(right)):
                found.append(Comparison(path, node.lineno, ast.unparse(node)))
                break
    return sorted(found, key=lambda c: c.line)


def hand_written_comparisons(root: Path) -> list[Comparison]:
    """Tenant comparisons in the product packages under ``root``, outside the choke point."""
    found = []
    for package in PACKAGES:
        for file in sorted((root / package).rglob("*.py")):
            path = file.relative_to(root).as_posix()
            if path != CHOKE_POINT:
                found += tenant_comparisons(file.read_text(encoding="utf-8"), path)
    return found


def test_no_hand_written_tenant_comparison() -> None:
    offending = [c for c in hand_written_comparisons(ROOT) if (c.path, c.source) not in ALLOWED]
    assert not offending, (
        "hand-written tenant comparison outside core/tenancy.py; use scoped() / scoped_update() /"
        " scoped_delete() / scoped_count() / get_owned() / TenantScope.owns() instead:\n"
        + "\n".join(str(c) for c in offending)
    )


def test_allow_list_names_existing_comparisons_once() -> None:
    found = [(c.path, c.source) for c in hand_written_comparisons(ROOT)]
    stale = {key: found.count(key) for key in ALLOWED if found.count(key) != 1}
    assert not stale, f"allow-list entries not matching exactly one comparison: {stale}"


def test_detector_counts_comparisons_only() -> None:
    source = """
# row.tenant_id == scope.tenant_id  (a comment)
NOTE = "Model.tenant_id == scope.tenant_id"  # a string
make(tenant_id=scope.tenant_id)
if owner != scope.tenant_id:
    pass
stmt = select(Doc).where(Doc.tenant_id == tenant.id, Doc.id == doc_id)
ok = a < b == row.tenant_id
"""
    assert [(c.line, c.source) for c in tenant_comparisons(source)] == [
        (5, "owner != scope.tenant_id"),
        (7, "Doc.tenant_id == tenant.id"),
        (8, "a < b == row.tenant_id"),
    ]
