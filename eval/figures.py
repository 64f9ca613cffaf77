"""Numbers in an answer's text, and whether the answer states a gold figure.

A figure is compared as a number, not as a string: ``117154`` is stated by "$117,154
million", "117,154" or "$117.154 billion"; ``5.5`` by "5.5%" or "5.47%" (the answer's number
rounded, half up, to the gold's decimals), not by "5%" or "6%".

- Currency signs (``$ € £ ¥``), thousands commas and a trailing ``%`` are read around the
  number; parentheses or a leading minus make it negative.
- A scale word or suffix after it (``thousand``, ``million``/``mn``/``m``, ``billion``/
  ``bn``/``b``, ``trillion``) also gives its value in millions, the unit of the filings'
  statements: "$117.154 billion" states 117,154 (million), and "117,154 million" states
  117,154 as written.
- Signs are not compared: the words carry them ("decreased 5.5%", "a net loss of $2,758
  million", "cash used of $1,785 million"), so ``-5.5`` is stated by "5.5%" and by "-5.5%".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

_NUMBER = re.compile(
    r"(?P<open>\()?"
    r"(?P<sign>[-−–](?=\s*(?:US)?[$€£¥]?\s*\(?\s*\d))?\s*"
    r"(?:US)?(?P<currency>[$€£¥])?\s*"
    r"(?P<open2>\()?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?![\d])(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<close>\s*\))?"
    r"(?:\s*(?P<percent>%|per\s?cent\b))?"
    r"(?:\s*(?P<scale>thousand|million|billion|trillion|mn|bn|[kmb])\b)?",
    re.IGNORECASE,
)
# A scale's factor to millions (the statements' unit).
_TO_MILLIONS = {
    "thousand": Decimal("0.001"),
    "k": Decimal("0.001"),
    "million": Decimal(1),
    "mn": Decimal(1),
    "m": Decimal(1),
    "billion": Decimal(1000),
    "bn": Decimal(1000),
    "b": Decimal(1000),
    "trillion": Decimal(1_000_000),
}


@dataclass(frozen=True, slots=True)
class Number:
    """A number as the text writes it: its value (sign applied, scale not), whether it is a
    percentage, its scale word ("million", "bn"; lower case) and the text matched."""

    value: Decimal
    percent: bool
    scale: str | None
    text: str

    @property
    def in_millions(self) -> Decimal | None:
        """The value in millions when a scale is written ("$117.2 billion" -> 117200)."""
        if self.scale is None:
            return None
        return self.value * _TO_MILLIONS[self.scale]

    def candidates(self) -> list[Decimal]:
        """The values it may state: as written, and in millions when scaled."""
        scaled = self.in_millions
        return [self.value] if scaled is None or scaled == self.value else [self.value, scaled]


def numbers(text: str) -> list[Number]:
    """Every number in ``text``, in order."""
    found: list[Number] = []
    for match in _NUMBER.finditer(text):
        try:
            value = Decimal(match.group("digits").replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern only matches digits
            continue
        parenthesised = bool(match.group("open") or match.group("open2")) and bool(
            match.group("close")
        )
        if match.group("sign") or parenthesised:
            value = -value
        scale = match.group("scale")
        found.append(
            Number(
                value=value,
                percent=bool(match.group("percent")),
                scale=scale.lower() if scale else None,
                text=match.group(0).strip(),
            )
        )
    return found


def parse_gold(figure: str) -> Decimal:
    """A gold figure as the question set writes it ("117154", "117,154", "-5.5", "$1.26",
    "(2,758)"); raises ``ValueError`` when it is not one number."""
    found = numbers(figure.strip())
    if len(found) != 1:
        raise ValueError(f"not a single number: {figure!r}")
    return found[0].value


def decimals(figure: str) -> int:
    """How many decimals the gold figure is written with ("5.5" -> 1, "117,154" -> 0)."""
    digits = str(parse_gold(figure)).lstrip("-")
    return len(digits.split(".", 1)[1]) if "." in digits else 0


def _rounded(value: Decimal, places: int) -> Decimal:
    return abs(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def states_figure(answer: str, figure: str) -> bool:
    """Does ``answer`` state ``figure``: some number in it, as written or in millions,
    equal to the figure once rounded to the figure's decimals (signs not compared)?"""
    places = decimals(figure)
    gold = _rounded(parse_gold(figure), places)
    return any(
        _rounded(candidate, places) == gold
        for number in numbers(answer)
        for candidate in number.candidates()
    )
