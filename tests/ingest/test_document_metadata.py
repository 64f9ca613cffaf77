"""A tenant's document metadata in the ingest layer, on SQLite and PostgreSQL: the checks
(``ingest.user_metadata``), metadata at upload and across versions, and
``update_metadata`` / ``reindex_document`` re-indexing a document whose contextual header
changed."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest

from core import tenants
from core.models import Document, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope
from ingest.documents import add_document, reindex_document, update_metadata
from ingest.user_metadata import InvalidMetadata, check_metadata, merge_metadata, parse_metadata
from retrieval import bm25
from services.container import Services
from tests.support.helpers import make_services
from tests.support.indexed_docs import index_document


def test_metadata_checks() -> None:
    assert parse_metadata('{"a": "x", "b": [1, 2.5, true], "gone": null}') == {
        "a": "x",
        "b": [1, 2.5, True],
    }
    assert check_metadata({"organisation": ["Apple Inc.", "Beats"]})["organisation"][1] == "Beats"
    for bad, problem in (
        ('"text"', "must be a JSON object"),
        ("{", "not valid JSON"),
        ('{"": 1}', "non-empty text"),
        ('{"title": ["a"]}', "'title' overrides the extracted title and must be text"),
        ('{"period": ""}', "'period' overrides"),
        ('{"n": Infinity}', "NaN or Infinity"),
        ('{"l": [' + ",".join(["1"] * 101) + "]}", "at most 100"),
    ):
        with pytest.raises(InvalidMetadata, match=problem) as raised:
            parse_metadata(bad)
        assert raised.value.status_code == 422
    assert merge_metadata({"a": 1, "b": 2}, {"a": None, "c": "x"}) == {"b": 2, "c": "x"}
    with pytest.raises(InvalidMetadata, match="51 keys"):
        merge_metadata({f"k{i}": i for i in range(50)}, {"one": "more"})


@pytest.fixture
def services(any_db_settings: Settings) -> Iterator[Services]:
    services_ = make_services(any_db_settings)
    yield services_
    services_.close()
    services_.db.dispose()


@pytest.fixture
def scope(services: Services) -> TenantScope:
    with services.db.session() as session:
        return TenantScope.of(tenants.create_tenant(session, "acme"))


def _terms(services: Services, scope: TenantScope, document_id: str) -> list[set[int]]:
    points = services.indexer.vector_index.points(scope, document_id=document_id, with_vectors=True)
    return [set(p.sparse.indices) if p.sparse else set() for p in points]


def _term(word: str) -> int:
    [term] = bm25.tokenize(word)
    return bm25.term_id(term)


def test_a_new_version_keeps_the_previous_versions_metadata_unless_given(
    services: Services, scope: TenantScope
) -> None:
    def add(data: bytes, **kwargs: Any) -> Document:
        with services.db.session() as session:
            result = add_document(
                session, services.settings, scope, "memo.md", io.BytesIO(data), **kwargs
            )
            session.expunge(result.document)
            return result.document

    first = add(b"# Memo\n\none\n", metadata={"department": "legal"}, title="Memo one")
    assert first.user_metadata == {"department": "legal", "title": "Memo one"}
    second = add(b"# Memo\n\ntwo\n")
    assert second.version == 2 and second.user_metadata == first.user_metadata
    third = add(b"# Memo\n\nthree\n", metadata={"department": "hr"})
    assert third.user_metadata == {"department": "hr"}
    with pytest.raises(InvalidMetadata):
        add(b"# Memo\n\nfour\n", metadata={"nested": {"a": 1}})


def test_update_metadata_reindexes_inline_or_leaves_it_to_the_task(
    services: Services, scope: TenantScope
) -> None:
    with services.db.session() as session:
        doc, _ = index_document(services.indexer, session, scope, ["Sales rose.", "Costs fell."])
        doc_id = doc.id
    zyx, quib = _term("Zyxcorp"), _term("Quibblewick")
    with services.db.session() as session:
        update = update_metadata(
            session, services, scope, doc_id, {"organisation": "Zyxcorp", "owner": "ann"}
        )
        assert update.reindex == "done"
    assert all(zyx in terms for terms in _terms(services, scope, doc_id))
    with services.db.session() as session:
        update = update_metadata(session, services, scope, doc_id, {"owner": "bob"})
        assert update.reindex == "none"  # not part of the header
        update = update_metadata(
            session, services, scope, doc_id, {"title": "Quibblewick"}, inline_max_chunks=1
        )
        assert update.reindex == "queued"
    assert not any(quib in terms for terms in _terms(services, scope, doc_id))
    assert reindex_document(services, scope.tenant_id, doc_id) == 2
    assert all({zyx, quib} <= terms for terms in _terms(services, scope, doc_id))
    # Replacing drops the organisation: the header loses it.
    with services.db.session() as session:
        update = update_metadata(session, services, scope, doc_id, {"a": 1}, replace=True)
        assert update.document.user_metadata == {"a": 1} and update.reindex == "done"
    assert not any(zyx in terms for terms in _terms(services, scope, doc_id))
    # Gone, not ready, or another tenant's: nothing to re-index.
    assert reindex_document(services, scope.tenant_id, "no-such-document") is None
    assert reindex_document(services, "no-such-tenant", doc_id) is None
    with services.db.session() as session:
        row = session.get(Document, doc_id)
        assert row is not None
        row.status = DocumentStatus.DELETING
    assert reindex_document(services, scope.tenant_id, doc_id) is None
