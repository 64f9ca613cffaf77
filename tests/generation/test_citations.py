"""Citation markers, quotes and the streaming marker filter."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from generation.citations import (
    MarkerFilter,
    build_citations,
    cited_claims,
    clean_markers,
    parse_marker,
)
from generation.prompts import build_prompt
from generation.sources import Source


def source(i: int, text: str) -> Source:
    return Source(
        chunk_id=f"chunk-{i}",
        document_id=f"doc-{i}",
        filename=f"file-{i}.pdf",
        text=text,
        page_start=i,
        page_end=i + 1,
        heading_path=("Part I", f"Item {i}"),
    )


SOURCES = [
    source(1, "Revenue grew 12% to $4.2 billion in the quarter. The board met twice."),
    source(2, "Gross margin fell to 41% because of higher component costs. Staff rose."),
    source(3, "The company opened a new office in Lyon. It employs 300 people there."),
]


def prompt_for(sources: list[Source]):  # type: ignore[no-untyped-def]
    return build_prompt("q?", sources, context_tokens=4096, max_answer_tokens=256)


def test_parse_marker_forms() -> None:
    assert parse_marker("1") == [1]
    assert parse_marker("1, 3") == [1, 3]
    assert parse_marker(" 2 ;4 ") == [2, 4]
    assert parse_marker("2-4") == [2, 3, 4]


def test_invalid_markers_are_removed_and_counted() -> None:
    text, invalid = clean_markers("Revenue grew [1]. Costs rose [7]. Both [2, 9].", {1, 2, 3})
    assert text == "Revenue grew [1]. Costs rose. Both [2]."
    assert invalid == 2


def test_text_in_brackets_that_is_not_a_marker_stays() -> None:
    text, invalid = clean_markers("See [Note 4] and [a] and [] here [1]", {1})
    assert text == "See [Note 4] and [a] and [] here [1]"
    assert invalid == 0


def test_markers_after_the_full_stop_belong_to_the_sentence_before() -> None:
    claims = cited_claims("Revenue grew 12%. [1] Margin fell [2, 3]. Unsupported claim.")
    assert claims == [
        ("Revenue grew 12%.", [1]),
        ("Margin fell.", [2, 3]),
        ("Unsupported claim.", []),
    ]


def test_citations_map_to_chunks_with_the_supporting_sentence_as_quote() -> None:
    prompt = prompt_for(SOURCES)
    citations = build_citations(
        "Gross margin dropped to 41% on component costs [2]. Revenue was $4.2 billion [1].",
        prompt,
    )
    assert [c.n for c in citations] == [2, 1]
    first = citations[0]
    assert (first.chunk_id, first.document_id, first.filename) == ("chunk-2", "doc-2", "file-2.pdf")
    assert (first.page_start, first.page_end, first.heading) == (2, 3, "Part I > Item 2")
    assert first.quote == "Gross margin fell to 41% because of higher component costs."
    assert citations[1].quote == "Revenue grew 12% to $4.2 billion in the quarter."


@given(
    text=st.text(alphabet="ab .[]0123456789,-", max_size=80),
    cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=8),
)
@settings(max_examples=300, deadline=None)
def test_streaming_filter_matches_whole_text_filter(text: str, cuts: list[int]) -> None:
    """However the tokens are split, streaming gives the same answer as the whole text."""
    whole, whole_invalid = clean_markers(text, {1, 2, 3})
    streamed = MarkerFilter({1, 2, 3})
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [streamed.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    pieces.append(streamed.finish())
    assert "".join(pieces) == whole == streamed.text
    assert streamed.invalid == whole_invalid


@given(
    answer=st.lists(
        st.tuples(
            st.sampled_from(["Revenue grew", "Margin fell", "An office opened", "Unrelated"]),
            st.lists(st.integers(min_value=-2, max_value=12), max_size=3),
        ),
        max_size=6,
    ),
    count=st.integers(min_value=1, max_value=3),
)
@settings(max_examples=200, deadline=None)
def test_every_citation_refers_to_a_source_in_the_prompt(
    answer: list[tuple[str, list[int]]], count: int
) -> None:
    prompt = prompt_for(SOURCES[:count])
    raw = " ".join(
        f"{claim} [{', '.join(map(str, numbers))}]." if numbers else f"{claim}."
        for claim, numbers in answer
    )
    text, _ = clean_markers(raw, range(1, len(prompt.sources) + 1))
    in_prompt = {s.chunk_id: s for s in prompt.sources}
    for citation in build_citations(text, prompt):
        assert citation.chunk_id in in_prompt
        assert prompt.sources[citation.n - 1].chunk_id == citation.chunk_id
        assert citation.quote and citation.quote in in_prompt[citation.chunk_id].text


def test_sentences_keep_abbreviations_decimals_and_split_cjk() -> None:
    from generation.text import split_sentences

    text = "Apple Inc. sold $82.9 billion. Growth was 5%! Next?\n\nTable row 1\n\n第一句。第二句！"
    assert split_sentences(text) == [
        "Apple Inc. sold $82.9 billion.",
        "Growth was 5%!",
        "Next?",
        "Table row 1",
        "第一句。",
        "第二句！",
    ]


def test_question_entities_are_the_capitalised_names_inside_sentences() -> None:
    from generation.text import question_entities

    assert question_entities("How has Apple's revenue changed?") == {"appl"}
    assert question_entities("In Amazon's 10-Q, what did AWS earn?") == {"amazon", "aws"}
    assert question_entities("What is the revenue?") == set()
