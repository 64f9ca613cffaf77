"""Figures from tables, answered figure first: the row a question names, the column of the
period it asks about, changes and ratios computed from the cited rows only; and refusals
when the question is about a company or a quarter no source is about. The statements
are copied from the SEC 10-Q filings as ingestion renders them (one row per line)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from core.settings import Settings
from generation.answer import answer_question
from generation.extractive import ExtractiveGenerator
from generation.figures import parse_number, parse_tables
from generation.prompts import markdown_tables
from generation.refusal import unsupported
from generation.sources import Source
from tests.support.helpers import make_settings

APPLE_Q1 = """PART I — FINANCIAL INFORMATION Item 1. Financial Statements Apple Inc. CONDENSED \
CONSOLIDATED STATEMENTS OF OPERATIONS (Unaudited) (In millions, except number of shares \
which are reflected in thousands and per share amounts)
Three Months Ended | December 31, 2022 | December 25, 2021
Net sales:
Products | 96,388 | 104,429
Services | 20,766 | 19,516
Total net sales | 117,154 | 123,945
Cost of sales:
Total cost of sales | 66,822 | 69,702
Gross margin | 50,332 | 54,243
Operating expenses:
Research and development | 7,709 | 6,306
Operating income | 36,016 | 41,488
Other income/(expense), net | (393) | (247)
Net income | 29,998 | 34,630
Earnings per share:
Basic | 1.89 | 2.11
Diluted | 1.88 | 2.10"""

AMAZON_Q3_CASH = """AMAZON.COM, INC. CONSOLIDATED STATEMENTS OF CASH FLOWS (in millions) (unaudited)
 | Three Months Ended September 30, 2022 | Three Months Ended September 30, 2023 | Nine \
Months Ended September 30, 2022 | Nine Months Ended September 30, 2023
Net cash provided by (used in) operating activities | 11,404 | 21,217 | 17,579 | 42,481
INVESTING ACTIVITIES:
Purchases of property and equipment | (16,378) | (12,479) | (47,053) | (38,141)"""

MSFT_Q3_CASH = """CASH FLOWS STATEMENTS (In millions) (Unaudited)
Three Months Ended September 30, | 2023 | 2022
Operations
Net income | 22,291 | 17,556
Net cash from operations | 30,583 | 23,198"""


def source(
    n: int, text: str, filename: str, organisation: str, period: str, ended: str = ""
) -> Source:
    return Source(
        chunk_id=f"c{n}", document_id=f"d{n}", filename=filename, text=text, page_start=4,
        page_end=4, organisations=(organisation,), period=period, period_end=ended or None,
        scores={"dense": 0.6}, score=0.6,
    )  # fmt: skip


APPLE = source(1, APPLE_Q1, "2023 Q1 AAPL.pdf", "Apple Inc.", "2023-Q1", "2022-12-31")
AMAZON = source(2, AMAZON_Q3_CASH, "2023 Q3 AMZN.pdf", "Amazon.com, Inc.", "2023-Q3",
                "2023-09-30")  # fmt: skip
MICROSOFT = source(3, MSFT_Q3_CASH, "2023 Q3 MSFT.pdf", "Microsoft Corporation", "2023-Q3")


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def ask(question: str, sources: list[Source], config: Settings) -> str:
    result = answer_question(question, sources, ExtractiveGenerator(), config)
    assert not result.refused, result.answer
    assert result.citations and result.citations[0].n >= 1
    return result.answer


@pytest.mark.parametrize(
    ("question", "sources", "first"),
    [
        (
            "What were Apple's total net sales for the quarter ended December 31, 2022?",
            [APPLE],
            "Total net sales for the three months ended December 31, 2022: $117,154 million [1]",
        ),
        (
            "What was Apple's diluted earnings per share in Q1 2023?",
            [APPLE],
            "Earnings per share, diluted for the three months ended December 31, 2022: $1.88 [1]",
        ),
        (
            # The statement prints the year-ago column first: the latest is still chosen.
            "What were Amazon's purchases of property and equipment in Q3 2023?",
            [AMAZON],
            "Purchases of property and equipment for the three months ended September 30, "
            "2023: −$12,479 million [1]",
        ),
        (
            "What was Amazon's operating cash flow for the nine months ended September 30, 2023?",
            [AMAZON],
            "Net cash provided by (used in) operating activities for the nine months ended "
            "September 30, 2023: $42,481 million [1]",
        ),
        (
            "What was Microsoft's operating cash flow in Q3 2023?",
            [MICROSOFT],
            "Net cash from operations for the three months ended September 30, 2023: "
            "$30,583 million [1]",
        ),
    ],
)
def test_a_figure_question_is_answered_with_the_figure_first(
    question: str, sources: list[Source], first: str, config: Settings
) -> None:
    answer = ask(question, sources, config)
    assert answer.startswith(first)
    assert "The statement reads:" in answer  # then the row that supports it


def test_a_change_is_computed_from_the_cited_rows_with_its_formula(config: Settings) -> None:
    answer = ask("How much did Apple's total net sales change from the year-ago quarter?",
                 [APPLE], config)  # fmt: skip
    assert answer.startswith("Total net sales changed by −$6,791 million (-5.5%)")
    assert "(117,154 − 123,945) / 123,945" in answer


def test_ratios_are_computed_from_two_rows_of_one_statement(config: Settings) -> None:
    share = ask("What percentage of Apple's total net sales came from Services in Q1 2023?",
                [APPLE], config)  # fmt: skip
    assert share.startswith("Net sales, services was 17.7% of total net sales")
    assert "20,766 / 117,154" in share
    margin = ask("What was Apple's gross margin percentage in Q1 2023?", [APPLE], config)
    assert margin.startswith("Gross margin was 43.0% of total net sales")


def test_other_questions_quote_the_best_sentence_first(config: Settings) -> None:
    prose = source(4, "The Company repurchased $19.0 billion of its common stock. Apple "
                   "faces intense competition in every market.", "a.pdf", "Apple Inc.",
                   "2023-Q1")  # fmt: skip
    answer = ask("Who does Apple compete with in its markets?", [prose], config)
    assert answer.startswith("Apple faces intense competition")


def test_questions_about_a_company_or_quarter_no_source_is_about_are_refused(
    config: Settings,
) -> None:
    sources = [APPLE, AMAZON]
    assert unsupported("What were Tesla's total revenues in Q1 2023?", sources) is not None
    assert unsupported("What were Apple's net sales in Q4 2021?", sources) is not None
    assert unsupported("What were Apple's net sales in Q1 2023?", sources) is None
    # The subject in the possessive, and days or years after every source's period.
    assert unsupported("What was Samsung Electronics' operating profit?", sources) is not None
    assert unsupported("In Apple's Q1 2023 10-Q, what were net sales?", sources) is None
    assert unsupported("What were Amazon's total assets as of March 31, 2024?", sources)
    assert unsupported("What will Apple's share price be at the end of 2025?", sources)
    # A day that ends a source's period settles a quarter named another way.
    fiscal = "Apple's net sales in Q1 fiscal 2022 (three months ended December 31, 2022)?"
    assert unsupported(fiscal, sources) is None
    refused = answer_question("What were Tesla's total revenues?", sources,
                              ExtractiveGenerator(), config)  # fmt: skip
    assert refused.refused
    assert "2023 Q1 AAPL.pdf" in refused.answer  # names the closest documents


def test_a_question_nothing_answers_is_refused(config: Settings) -> None:
    generator = ExtractiveGenerator(min_overlap=0.3)
    result = answer_question("What is the CEO's favourite restaurant?", [APPLE], generator,
                             config)  # fmt: skip
    assert result.refused


def test_numbers_and_tables_are_read_as_printed() -> None:
    assert parse_number("117,154") == Decimal(117154)
    assert parse_number("(393)") == Decimal(-393)
    assert parse_number("35.8 %") == Decimal("35.8")
    assert parse_number("—") is None and parse_number("Net sales") is None
    [table] = parse_tables(APPLE_Q1)
    assert table.scale == "million"
    assert table.columns == [
        "Three Months Ended December 31, 2022",
        "Three Months Ended December 25, 2021",
    ]
    assert [r.label for r in table.rows][:3] == ["Products", "Services", "Total net sales"]


def test_the_llm_reads_tables_as_markdown() -> None:
    rendered = markdown_tables("Caption\nA | 1 | 2\nB | 3 | 4\nAfter")
    assert rendered == "Caption\n| A | 1 | 2 |\n| --- | --- | --- |\n| B | 3 | 4 |\nAfter"


@pytest.mark.parametrize(
    "question",
    [
        "What were Apple's total net sales? " * 114,  # ~4,000 characters
        "?!... ---",
        "苹果公司截至2022年12月31日的季度净销售额是多少？",
        "What percentage of of of the the share as a percentage of " * 60,
    ],
)
def test_odd_questions_get_an_answer_or_a_refusal_quickly(question: str, config: Settings) -> None:
    import time

    started = time.perf_counter()
    result = answer_question(question, [APPLE, AMAZON], ExtractiveGenerator(), config)
    assert result.answer.strip()
    assert result.refused or result.citations
    assert time.perf_counter() - started < 2.0


def test_a_table_of_shares_of_revenue_is_not_read_as_amounts(config: Settings) -> None:
    shares = source(5, "The following table sets forth, as a percentage of revenue, our "
                    "results of operations:\nThree Months Ended | April 30, 2023 | May 1, 2022\n"
                    "Research and development | 26.1 | 19.5", "2023 Q1 NVDA.pdf",
                    "Nvidia Corporation", "2023-Q1", "2023-04-30")  # fmt: skip
    amounts = source(6, "CONDENSED CONSOLIDATED STATEMENTS OF INCOME (In millions)\n"
                     "Three Months Ended | April 30, 2023 | May 1, 2022\n"
                     "Research and development | 1,875 | 1,618", "2023 Q1 NVDA.pdf",
                     "Nvidia Corporation", "2023-Q1", "2023-04-30")  # fmt: skip
    asked = "How much did NVIDIA spend on R&D in the three months ended April 30, 2023?"
    assert "$1,875 million [2]" in ask(asked, [shares, amounts], config)
    share = ask("What percentage of revenue was NVIDIA's research and development?", [shares],
                config)  # fmt: skip
    assert "26.1%" in share


def test_a_change_between_two_named_dates_starts_from_the_later(config: Settings) -> None:
    # Amazon prints the year-ago column first; the question names both dates.
    asked = ("By how much did Amazon's purchases of property and equipment change in the "
             "three months ended September 30, 2023 compared with September 30, 2022?")  # fmt: skip
    answer = ask(asked, [AMAZON], config)
    assert answer.startswith("Purchases of property and equipment changed by $3,899 million")
