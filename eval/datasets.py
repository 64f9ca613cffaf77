"""Evaluation data sets: what to search (a corpus of passages, a folder of files, or a
tenant's own documents) and the questions with what should be found (and answered).

Three layouts load into the one :class:`Dataset`:

- BEIR (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``): SciFact and friends.
- SQuAD reading comprehension (``{"data": [{"paragraphs": [{"context", "qas"}]}]}``):
  every paragraph is a passage, a question's own paragraph is its relevant passage, and
  its gold answers are kept for answer scoring (CMRC2018 is in this layout).
- A question set a tenant writes for its own knowledge base, CSV or JSONL: a question,
  the documents that should be found (file names, ``*`` globs or document ids; several
  separated by ``|``, ``;``, ``,`` or new lines, or a JSON list) and optionally an answer.
  The SEC 10-Q ``qna_data*.csv`` files are in this layout (``Question``, ``Source Docs``,
  ``Answer``). Optional columns judge the answer itself: ``figure`` (the number it must
  state, see ``eval.figures``), ``pages`` (1-based PDF pages holding it, ``|``-separated)
  and ``kind`` (``lookup``, ``derived`` or ``unanswerable``); ``eval/questions/`` keeps
  such sets in the repository (``sec-figures``).
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import BadRequest
from eval.figures import parse_gold

CorpusKind = Literal["passages", "files", "tenant"]
# What a question asks for: one printed figure, a figure computed from printed ones, or
# something the corpus does not hold (the answer should refuse).
QUESTION_KINDS = ("lookup", "derived", "unanswerable")
_REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class KnownSet:
    """A name ``--dataset`` knows: its file (relative to the datasets root, or to the
    repository for the sets kept in ``eval/questions/``), its layout, and for a question set
    whose documents are not in a ``docs`` folder beside it, that folder (relative to the
    datasets root)."""

    path: str
    layout: str
    in_repository: bool = False
    docs_dir: str | None = None


KNOWN = {
    "scifact": KnownSet("scifact", "beir"),
    "cmrc2018": KnownSet("cmrc2018/cmrc2018_dev.json", "squad"),
    "sec-10q": KnownSet("sec-10-q/qna_data.csv", "questions"),
    "sec-10q-mini": KnownSet("sec-10-q/qna_data_mini.csv", "questions"),
    # Figures, derived figures and unanswerable questions over the 20 10-Q filings.
    "sec-figures": KnownSet(
        "eval/questions/sec_figures.csv", "questions", in_repository=True, docs_dir="sec-10-q/docs"
    ),
}
# A question set that names a whole folder of files to ingest looks for it here.
_DOCS_FOLDER = "docs"
MAX_QUESTIONS = 5000
# The longest question the API asks (``/v1/query``, ``/v1/search``): a longer one in an
# uploaded set is refused at upload with its line, not halfway through the run.
MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    title: str
    text: str


@dataclass
class EvalQuery:
    id: str
    text: str
    # Relevant corpus ids (passages) with their grade; for file corpora see ``expected``.
    relevant: dict[str, int] = field(default_factory=dict)
    # File names, globs or document ids of the documents that should be found/cited.
    expected: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    # The number the answer must state ("117154", "-5.5"), where the set gives one.
    figure: str | None = None
    # 1-based PDF pages of the expected documents that hold the figure.
    pages: list[int] = field(default_factory=list)
    # One of QUESTION_KINDS, where the set says.
    kind: str | None = None

    @property
    def answerable(self) -> bool:
        return self.kind != "unanswerable"


@dataclass
class Dataset:
    name: str
    kind: CorpusKind
    queries: list[EvalQuery]
    passages: dict[str, Passage] = field(default_factory=dict)
    docs_dir: Path | None = None
    source: str = ""
    # Names the throw-away tenant: question sets over the same folder share its corpus.
    corpus_name: str = ""

    def limited(self, limit: int | None) -> Dataset:
        """The first ``limit`` queries, and for a passage corpus every passage (the
        distractors stay: dropping them would make retrieval easier than it is)."""
        if limit is None or limit >= len(self.queries):
            return self
        # Another name (runs compare by name), the same corpus (and throw-away tenant).
        return Dataset(
            f"{self.name}-first{limit}",
            self.kind,
            self.queries[:limit],
            self.passages,
            self.docs_dir,
            self.source,
            self.corpus_name or self.name,
        )

    def fingerprint(self) -> str:
        """Identifies the corpus: an unchanged one is reused instead of ingested again."""
        digest = hashlib.sha256(self.kind.encode())
        if self.kind == "passages":
            for passage in self.passages.values():
                for part in (passage.id, passage.title, passage.text):
                    digest.update(part.encode())
                    digest.update(b"\0")
        elif self.docs_dir is not None:
            for path in sorted(self.docs_dir.iterdir()):
                if path.is_file():
                    digest.update(path.name.encode())
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()


def default_root() -> Path:
    """``../shared/data`` beside the repository (``RAGKB_EVAL_DATA_DIR`` overrides)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def resolve(name_or_path: str, root: Path | None = None, *, split: str = "test") -> Dataset:
    """A known name (``scifact``, ``cmrc2018``, ``sec-10q``) under ``root``, or a path to a
    BEIR folder, a SQuAD JSON file or a CSV/JSONL question set."""
    root = root or default_root()
    if name_or_path in KNOWN:
        known = KNOWN[name_or_path]
        path = (_REPOSITORY if known.in_repository else root) / known.path
        if not path.exists():
            raise FileNotFoundError(f"data set {name_or_path!r} not found at {path}")
        docs = None
        if known.docs_dir is not None:
            docs = root / known.docs_dir
            if not docs.is_dir():
                raise FileNotFoundError(
                    f"the documents of data set {name_or_path!r} are not at {docs} (point "
                    f"RAGKB_EVAL_DATA_DIR or --data-root at the folder holding {known.docs_dir})"
                )
        return _load(path, known.layout, name_or_path, split, docs=docs)
    path = Path(name_or_path)
    if not path.exists():
        names = ", ".join(KNOWN)
        raise FileNotFoundError(
            f"{name_or_path!r} is neither a known data set ({names}) nor a path"
        )
    if path.is_dir():
        return _load(path, "beir", path.name, split)
    if path.suffix.lower() == ".json":
        return _load(path, "squad", path.stem, split)
    return _load(path, "questions", path.stem, split)


def _load(path: Path, layout: str, name: str, split: str, *, docs: Path | None = None) -> Dataset:
    if layout == "beir":
        return load_beir(path, split, name=name)
    if layout == "squad":
        return load_squad(path, name=name)
    queries = load_question_set(path.read_bytes(), path.name)
    # The tenant is named after the folder holding ``docs``: sets over the same files share it.
    docs = docs or path.parent / _DOCS_FOLDER
    return Dataset(
        name,
        "files" if docs.is_dir() else "tenant",
        queries,
        docs_dir=docs if docs.is_dir() else None,
        source=str(path),
        corpus_name=docs.parent.name if docs.is_dir() else "",
    )


def load_beir(folder: Path, split: str = "test", *, name: str | None = None) -> Dataset:
    """Only the queries that have judgements in ``qrels/<split>.tsv`` are kept."""
    passages: dict[str, Passage] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                pid = str(row["_id"])
                passages[pid] = Passage(pid, row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or not row[2].strip().lstrip("-").isdigit():
                continue  # the header line
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    queries: list[EvalQuery] = []
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                qid = str(row["_id"])
                if qid in qrels:
                    queries.append(EvalQuery(qid, row["text"], relevant=qrels[qid]))
    return Dataset(name or folder.name, "passages", queries, passages, source=str(folder))


def load_squad(path: Path, *, name: str | None = None) -> Dataset:
    """Paragraphs become passages (ids from the file, or ``p<n>``); each question's own
    paragraph is relevant; its distinct gold answers are kept."""
    data = json.loads(path.read_text(encoding="utf-8"))
    passages: dict[str, Passage] = {}
    queries: list[EvalQuery] = []
    for article in data.get("data", []):
        title = str(article.get("title") or "")
        for paragraph in article.get("paragraphs", []):
            pid = str(paragraph.get("id") or f"p{len(passages)}")
            passages[pid] = Passage(pid, title, paragraph["context"])
            for qa in paragraph.get("qas", []):
                answers = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a["text"]))
                queries.append(
                    EvalQuery(
                        str(qa.get("id") or f"q{len(queries)}"),
                        qa["question"],
                        relevant={pid: 1},
                        answers=answers,
                    )
                )
    return Dataset(name or path.stem, "passages", queries, passages, source=str(path))


_QUESTION_KEYS = ("question", "query", "q")
_EXPECTED_KEYS = (
    "expected_documents",
    "documents",
    "expected",
    "source_docs",
    "source_documents",
    "docs",
)
_ANSWER_KEYS = ("answer", "answers", "expected_answer")
_FIGURE_KEYS = ("figure", "gold_figure")
_PAGES_KEYS = ("pages", "page", "expected_pages")
_KIND_KEYS = ("kind", "question_kind")
_SPLIT = re.compile(r"[|;,\n]")
_PAGE_SPLIT = re.compile(r"[|;,\s]+")


def load_question_set(content: bytes, filename: str = "questions.csv") -> list[EvalQuery]:
    """Questions from a CSV (header row) or JSONL upload; column names are matched without
    case, spaces or underscores (``Source Docs`` = ``source_docs``). Raises ``BadRequest``
    with the line at fault."""
    text = content.decode("utf-8-sig")
    is_jsonl = filename.lower().endswith(
        (".jsonl", ".json", ".ndjson")
    ) or text.lstrip().startswith("{")
    rows: list[tuple[int, Mapping[str, Any]]] = []
    if is_jsonl:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadRequest(
                    f"line {n}: not JSON ({exc.msg})", code="invalid_question_set"
                ) from exc
            if not isinstance(row, dict):
                raise BadRequest(f"line {n}: expected a JSON object", code="invalid_question_set")
            rows.append((n, row))
    else:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = [(n, row) for n, row in enumerate(reader, start=2)]
    queries: list[EvalQuery] = []
    for n, raw in rows:
        row = {_key(k): v for k, v in raw.items() if k is not None}
        question = _first(row, _QUESTION_KEYS)
        if not isinstance(question, str) or not question.strip():
            raise BadRequest(f"line {n}: no question", code="invalid_question_set")
        if len(question.strip()) > MAX_QUESTION_CHARS:
            raise BadRequest(
                f"line {n}: the question is longer than {MAX_QUESTION_CHARS:,} characters",
                code="invalid_question_set",
            )
        answers = _as_list(_first(row, _ANSWER_KEYS), split=False)
        queries.append(
            EvalQuery(
                id=str(row.get("id") or f"q{len(queries) + 1}"),
                text=question.strip(),
                expected=_as_list(_first(row, _EXPECTED_KEYS), split=True),
                answers=answers,
                figure=_figure(_first(row, _FIGURE_KEYS), n),
                pages=_pages(_first(row, _PAGES_KEYS), n),
                kind=_kind(_first(row, _KIND_KEYS), n),
            )
        )
    if not queries:
        raise BadRequest("the question set has no questions", code="invalid_question_set")
    if len(queries) > MAX_QUESTIONS:
        raise BadRequest(
            f"the question set has {len(queries)} questions (at most {MAX_QUESTIONS})",
            code="invalid_question_set",
        )
    return queries


def _figure(value: Any, n: int) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        parse_gold(text)
    except ValueError as exc:
        raise BadRequest(
            f"line {n}: the figure {text[:40]!r} is not a number", code="invalid_question_set"
        ) from exc
    return text


def _pages(value: Any, n: int) -> list[int]:
    """ "4|10", "4, 10", "3-5" or a JSON list -> [4, 10] / [3, 4, 5]."""
    if value is None:
        return []
    parts = value if isinstance(value, list) else _PAGE_SPLIT.split(str(value).strip())
    pages: list[int] = []
    for part in (str(p).strip() for p in parts):
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()) or int(low) < 1:
            raise BadRequest(
                f"line {n}: pages must be page numbers from 1 (got {part[:20]!r})",
                code="invalid_question_set",
            )
        pages.extend(range(int(low), int(high or low) + 1)[:1000])
    return list(dict.fromkeys(pages))


def _kind(value: Any, n: int) -> str | None:
    if value is None:
        return None
    kind = str(value).strip().lower()
    if kind not in QUESTION_KINDS:
        raise BadRequest(
            f"line {n}: kind {kind[:20]!r} is not one of {', '.join(QUESTION_KINDS)}",
            code="invalid_question_set",
        )
    return kind


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


def _first(row: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = row.get(key)
        if value not in (None, "", []):
            return value
    return None


def _as_list(value: Any, *, split: bool) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if split and text.startswith("["):
        try:
            parsed = json.loads(text)
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        except json.JSONDecodeError:
            pass
    parts = _SPLIT.split(text) if split else [text]
    return [p.strip() for p in parts if p.strip()]


def matches(expected: Iterable[str], document_id: str, filename: str) -> bool:
    """Does a document answer to one of the expected names, globs or ids?"""
    stem = filename.rsplit(".", 1)[0]
    for pattern in expected:
        if pattern == document_id:
            return True
        if fnmatch.fnmatch(filename.lower(), pattern.lower()) or fnmatch.fnmatch(
            stem.lower(), pattern.lower()
        ):
            return True
    return False


def questions_to_records(queries: list[EvalQuery]) -> list[dict[str, Any]]:
    """JSON-able form (an API run stores its uploaded questions in its params)."""
    return [
        {
            "id": q.id,
            "text": q.text,
            "expected": q.expected,
            "answers": q.answers,
            **({"figure": q.figure} if q.figure is not None else {}),
            **({"pages": q.pages} if q.pages else {}),
            **({"kind": q.kind} if q.kind is not None else {}),
        }
        for q in queries
    ]


def questions_from_records(records: list[dict[str, Any]]) -> list[EvalQuery]:
    return [
        EvalQuery(
            id=str(r["id"]),
            text=str(r["text"]),
            expected=list(r.get("expected") or []),
            answers=list(r.get("answers") or []),
            figure=r.get("figure"),
            pages=[int(p) for p in r.get("pages") or []],
            kind=r.get("kind"),
        )
        for r in records
    ]
