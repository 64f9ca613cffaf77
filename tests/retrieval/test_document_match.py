"""Look-alike documents: filings of two companies for two quarters, whose chunks never
name their company or quarter. The contextual header, metadata filters and questions
that name a company or a period find the right filing; another tenant's metadata never
shapes this tenant's results."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from core.models import Document
from core.tenancy import TenantScope
from core.tenants import create_tenant
from retrieval.document_match import MetadataFilters
from retrieval.search import SearchRequest, SearchResponse, search
from services.container import Services
from tests.support.indexed_docs import index_document

FILING = [
    "Total net sales were {sales} million for the quarter, driven by services.",
    "Research and development expense increased due to headcount growth.",
    "Cash and cash equivalents were {cash} million at the end of the period.",
    "The effective tax rate was lower because of foreign earnings.",
    "Legal proceedings: the Company is subject to various claims and lawsuits.",
    "Inventories decreased compared with the prior year-end balance.",
]
FILINGS = {
    ("Apple Inc.", "2023-Q1", date(2022, 12, 31)): ("117,154", "20,535"),
    ("Apple Inc.", "2023-Q2", date(2023, 4, 1)): ("94,836", "24,687"),
    ("Microsoft Corporation", "2023-Q1", date(2022, 12, 31)): ("52,747", "15,646"),
    ("Microsoft Corporation", "2023-Q2", date(2023, 3, 31)): ("52,857", "26,562"),
}


@pytest.fixture
def tenants(services: Services) -> tuple[TenantScope, TenantScope, dict[str, str]]:
    """Tenant A holds the four filings (ids by "Apple 2023-Q1"...); tenant B one filing of
    a company A has never heard of, with the same words."""
    ids: dict[str, str] = {}
    with services.db.session() as session:
        a, b = create_tenant(session, "acme"), create_tenant(session, "globex")
        scope_a, scope_b = TenantScope(a.id, a.slug), TenantScope(b.id, b.slug)
        for (company, period, ended), (sales, cash) in FILINGS.items():
            texts = [t.format(sales=sales, cash=cash) for t in FILING]
            doc, _ = index_document(
                services.indexer, session, scope_a, texts,
                filename=f"{period} {company.split()[0]}.pdf", organisations=[company],
                period=period, period_end=ended, document_type="Form 10-Q",
            )  # fmt: skip
            ids[f"{company.split()[0]} {period}"] = doc.id
        index_document(
            services.indexer, session, scope_b, [t.format(sales="9", cash="1") for t in FILING],
            organisations=["Globex Corporation"], period="2023-Q1", document_type="Form 10-Q",
        )  # fmt: skip
        index_document(services.indexer, session, scope_b, ["Minutes of the board meeting."])
    return scope_a, scope_b, ids


def _search(services: Services, scope: TenantScope, **kwargs: Any) -> SearchResponse:
    with services.db.session() as session:
        return search(
            services.settings, session, scope, SearchRequest(**kwargs),
            indexer=services.indexer, reranker=services.reranker,
        )  # fmt: skip


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_a_question_naming_company_and_quarter_finds_that_filing(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]], mode: str
) -> None:
    scope, _, ids = tenants
    found = _search(services, scope, query="What were Apple's total net sales in Q2 2023?",
                    mode=mode)  # fmt: skip
    assert found.hits[0].document_id == ids["Apple 2023-Q2"]
    assert "94,836" in found.hits[0].text
    assert found.documents.startswith("preferred: 1 document")
    # About one filing: the per-document cap is lifted, every chunk of it may come back.
    assert sum(h.document_id == ids["Apple 2023-Q2"] for h in found.hits) == len(FILING)


def test_a_company_named_without_a_period_prefers_all_its_filings(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]]
) -> None:
    scope, _, ids = tenants
    found = _search(services, scope, query="How did Microsoft's net sales change?", top_k=4)
    assert {h.document_id for h in found.hits} <= {ids["Microsoft 2023-Q1"],
                                                   ids["Microsoft 2023-Q2"]}  # fmt: skip
    latest = _search(services, scope, query="Microsoft net sales in the latest 10-Q", top_k=1)
    assert latest.hits[0].document_id == ids["Microsoft 2023-Q2"]


def test_the_header_is_indexed_but_never_quoted(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]]
) -> None:
    scope, _, ids = tenants
    off = services.settings.model_copy(deep=True)
    off.retrieval.question_match = "off"
    with services.db.session() as session:
        found = search(
            off, session, scope, SearchRequest(query="Microsoft Q1 2023 net sales", mode="bm25"),
            indexer=services.indexer, reranker=services.reranker,
        )  # fmt: skip
    assert found.documents == "all"
    # Only the header says "Microsoft" and "Q1 2023": it is what ranks this filing first.
    assert found.hits[0].document_id == ids["Microsoft 2023-Q1"]
    assert all("Microsoft" not in h.text and "·" not in h.text for h in found.hits)


def test_filters_restrict_to_matching_documents(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]]
) -> None:
    scope, _, ids = tenants
    apple_q1 = {"organisation": "apple", "period": "Q1 2023"}
    one = _search(services, scope, query="net sales", filters=apple_q1)
    assert {h.document_id for h in one.hits} == {ids["Apple 2023-Q1"]}
    assert one.documents == "filtered: 1 document(s)"
    year = _search(services, scope, query="net sales", filters={"organisation": "AAPL"})
    assert year.hits == []  # no ticker is known for these filings: nothing matches
    two = {"organisation": ["Apple", "Microsoft"], "period": "2023-Q2"}
    both = _search(services, scope, query="net sales", filters=two)
    assert {h.document_id for h in both.hits} == {ids["Apple 2023-Q2"], ids["Microsoft 2023-Q2"]}


def test_an_unknown_filter_field_names_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as raised:
        SearchRequest(query="x", filters={"company": "Apple"})  # type: ignore[arg-type]
    message = str(raised.value)
    assert "company" in message
    for name in ("organisation", "period", "document_type", "title", "metadata"):
        assert name in message
    assert MetadataFilters(organisation="Apple").is_empty() is False


def test_user_metadata_overrides_and_filters(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]]
) -> None:
    scope, _, ids = tenants
    with services.db.session() as session:
        doc = session.get(Document, ids["Apple 2023-Q1"])
        assert doc is not None
        doc.user_metadata = {"department": "finance", "organisation": "Pear Computers Inc."}
    finance = {"metadata": {"department": "Finance"}}
    tagged = _search(services, scope, query="net sales", filters=finance)
    assert {h.document_id for h in tagged.hits} == {ids["Apple 2023-Q1"]}
    renamed = _search(services, scope, query="net sales", filters={"organisation": "Pear"})
    assert {h.document_id for h in renamed.hits} == {ids["Apple 2023-Q1"]}


def test_another_tenants_metadata_never_shapes_results(
    services: Services, tenants: tuple[TenantScope, TenantScope, dict[str, str]]
) -> None:
    scope_a, scope_b, _ = tenants
    # Globex is a company only tenant B's metadata knows.
    asked = _search(services, scope_a, query="What were Globex's net sales?")
    assert asked.documents == "all"
    assert _search(services, scope_a, query="net sales",
                   filters={"organisation": "Globex"}).hits == []  # fmt: skip
    own = _search(services, scope_b, query="What were Globex's net sales?")
    assert own.documents.startswith("preferred")
