"""Numbers in answer text and the "figure stated" judgement (eval.figures)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eval.figures import decimals, numbers, parse_gold, states_figure


def _values(text: str) -> list[tuple[str, bool, str | None]]:
    return [(str(n.value), n.percent, n.scale) for n in numbers(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$117,154 million", [("117154", False, "million")]),
        ("Net loss: $(2,758) million", [("-2758", False, "million")]),
        ("(1,785)", [("-1785", False, None)]),
        ("( 393 )", [("-393", False, None)]),
        ("down -5.5%", [("-5.5", True, None)]),
        ("−36.2 %", [("-36.2", True, None)]),
        ("12.6 percent", [("12.6", True, None)]),
        ("$117.154 billion and $6.8B", [("117.154", False, "billion"), ("6.8", False, "b")]),
        ("US$1.26 per share", [("1.26", False, None)]),
        ("€3.5bn", [("3.5", False, "bn")]),
        ("1,2345", [("1", False, None), ("2345", False, None)]),
        ("Form 10-Q", [("10", False, None)]),
        ("no numbers here", []),
    ],
)
def test_numbers_read_currency_commas_parentheses_percent_and_scale(
    text: str, expected: list[tuple[str, bool, str | None]]
) -> None:
    assert _values(text) == expected


def test_a_scaled_number_is_also_read_in_millions() -> None:
    (billions,) = numbers("$117.154 billion")
    assert billions.in_millions == Decimal("117154.000")
    (thousands,) = numbers("815 thousand")
    assert thousands.in_millions == Decimal("0.815")
    (plain,) = numbers("815")
    assert plain.in_millions is None and plain.candidates() == [Decimal(815)]


def test_gold_figures_and_their_decimals() -> None:
    assert parse_gold("117154") == parse_gold("117,154") == Decimal(117154)
    assert parse_gold("-5.5") == Decimal("-5.5")
    assert decimals("5.5") == 1 and decimals("117,154") == 0 and decimals("0.07") == 2
    with pytest.raises(ValueError, match="not a single number"):
        parse_gold("about 5 or 6")
    with pytest.raises(ValueError):
        parse_gold("n/a")


@pytest.mark.parametrize(
    ("answer", "figure"),
    [
        (
            "Total net sales for the three months ended December 31, 2022: $117,154 million.",
            "117154",
        ),
        ("Total net sales were 117,154 (in millions).", "117,154"),
        ("Apple's net sales were $117.154 billion.", "117154"),
        ("Net sales decreased 5.5% from the year-ago quarter.", "-5.5"),
        ("a change of -5.48%", "-5.5"),
        ("Net loss attributable to Intel: $(2,758) million", "-2758"),
        ("a net loss of $2,758 million", "-2758"),
        ("Diluted EPS was $0.07.", "0.07"),
        ("Gross margin was 74%.", "74.0"),
        ("Revenue rose 101.48% year over year.", "101.5"),
    ],
)
def test_an_answer_states_the_figure(answer: str, figure: str) -> None:
    assert states_figure(answer, figure)


@pytest.mark.parametrize(
    ("answer", "figure"),
    [
        ("Net sales were about $117 billion.", "117154"),
        ("Net sales were $117.2 billion.", "117154"),
        ("Net sales decreased 5%.", "-5.5"),
        ("Revenue fell 36% from Q1 2022.", "-36.2"),
        ("Total net sales were $123,945 million a year earlier.", "117154"),
        ("I cannot find this in the documents.", "117154"),
        ("", "1.26"),
    ],
)
def test_an_answer_that_does_not_state_the_figure(answer: str, figure: str) -> None:
    assert not states_figure(answer, figure)
