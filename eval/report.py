"""The run directory: ``results.json``, ``report.md`` and a self-contained ``report.html``
(plots embedded as PNG), plus the plots as files (``plots/*.png``) for the Markdown.

Plots: the headline metrics per mode, Recall@k curves, the distribution of search latency
per mode, and per-query nDCG@10 of the default pipeline against each other mode (which
queries it wins and loses, listed with their text).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from eval.metrics import PRIMARY, RECALL_CURVE_KS

HEADLINE = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
_WINS_SHOWN = 5


def write(target: Path, results: dict[str, Any]) -> dict[str, Path]:
    """Write every file of the run directory; returns their paths by kind."""
    plots_dir = target / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(
        json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    plots = {name: fig for name, fig in _figures(results).items()}
    images: dict[str, bytes] = {}
    for name, fig in plots.items():
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        images[name] = buffer.getvalue()
        (plots_dir / f"{name}.png").write_bytes(images[name])
    (target / "report.md").write_text(markdown(results, list(images)), encoding="utf-8")
    (target / "report.html").write_text(html_report(results, images), encoding="utf-8")
    return {
        "results": target / "results.json",
        "markdown": target / "report.md",
        "html": target / "report.html",
    }


# --- tables -------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metric_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["mode", *HEADLINE, "p50 ms", "p95 ms"]
    rows = []
    for mode, entry in results.get("modes", {}).items():
        total = entry.get("latency_ms", {}).get("total", {})
        label = f"{mode} (default)" if mode == results.get("default_mode") else mode
        if entry.get("kind") == "baseline":
            label += " [baseline]"
        rows.append(
            [label]
            + [_fmt(entry.get(m)) for m in HEADLINE]
            + [_fmt(total.get("p50"), 1), _fmt(total.get("p95"), 1)]
        )
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def wins_and_losses(
    results: dict[str, Any], other: str, count: int = _WINS_SHOWN
) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
    """(query id, ours, theirs) of the queries the default mode wins most / loses most."""
    ours = results.get("per_query", {}).get(results.get("default_mode", ""), {})
    theirs = results.get("per_query", {}).get(other, {})
    diffs = [(q, ours[q], theirs[q]) for q in ours if q in theirs and ours[q] != theirs[q]]
    diffs.sort(key=lambda t: t[1] - t[2], reverse=True)
    wins = [d for d in diffs if d[1] > d[2]][:count]
    losses = [d for d in reversed(diffs) if d[1] < d[2]][:count]
    return wins, losses


def _comparators(results: dict[str, Any]) -> list[str]:
    default = results.get("default_mode")
    return [m for m in results.get("per_query", {}) if m != default]


def _closest(results: dict[str, Any], comparators: list[str]) -> list[str]:
    """Whose wins and losses to list: the best other mode of ours and the best baseline."""
    modes = results.get("modes", {})
    chosen = []
    for kind in ("pipeline", "baseline"):
        ranked = sorted(
            (m for m in comparators if modes.get(m, {}).get("kind") == kind),
            key=lambda m: modes[m].get(PRIMARY, 0.0),
            reverse=True,
        )
        chosen += ranked[:1]
    return chosen


def _tally(results: dict[str, Any], other: str) -> tuple[int, int, int]:
    ours = results.get("per_query", {}).get(results.get("default_mode", ""), {})
    theirs = results.get("per_query", {}).get(other, {})
    wins = sum(1 for q in ours if q in theirs and ours[q] > theirs[q])
    losses = sum(1 for q in ours if q in theirs and ours[q] < theirs[q])
    return wins, losses, sum(1 for q in ours if q in theirs) - wins - losses


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    out = [f"# Evaluation: {results.get('dataset')}", ""]
    corpus = results.get("corpus", {})
    out.append(
        f"{results.get('queries')} questions ({results.get('judged_queries')} with judgements), "
        f"{corpus.get('documents')} documents in tenant `{corpus.get('tenant')}`"
        f"{' (reused)' if corpus.get('reused') else ''}; second stage: {results.get('reranker')}; "
        f"embedding model `{results.get('settings', {}).get('embedding_model')}`. "
        f"Time: {results.get('timings_s', {}).get('total', results.get('elapsed_s'))} s."
    )
    out += ["", "## Retrieval", "", _md_table(*metric_rows(results)), ""]
    out.append(
        "Latency: one search per query as each mode runs it here (first stages fetch 100 "
        "documents, the second stage re-scores its candidates); baselines are in-memory."
    )
    out.append("")
    if results.get("ratios"):
        out.append("Default pipeline nDCG@10 as a ratio over each mode: " + ", ".join(
            f"{k.split(' / ')[1]} ×{v:.3f}" for k, v in results["ratios"].items()
        ) + ".")  # fmt: skip
        out.append("")
    answers = results.get("answers")
    if answers:
        out += ["## Answers (default pipeline)", ""]
        out.append(
            _md_table(
                [
                    "questions",
                    "refusal rate",
                    "citation precision",
                    "citation recall",
                    "token F1",
                    "exact match",
                    "groundedness",
                    "end-to-end p50 ms",
                    "p95 ms",
                ],
                [
                    [
                        str(answers["questions"]),
                        _fmt(answers["refusal_rate"]),
                        _fmt(answers["citation_precision"]),
                        _fmt(answers["citation_recall"]),
                        _fmt(answers["token_f1"]),
                        _fmt(answers["exact_match"]),
                        _fmt(answers["groundedness"]),
                        _fmt(answers["latency_ms"].get("end_to_end", {}).get("p50"), 1),
                        _fmt(answers["latency_ms"].get("end_to_end", {}).get("p95"), 1),
                    ]
                ],
            )
        )
        out += [
            "",
            f"Generator: {answers['generator']}; groundedness judged by "
            f"{answers['groundedness_judge']}. Latency p50 / p95 per stage: "
            + ", ".join(
                f"{stage} {_fmt(v.get('p50'), 1)} / {_fmt(v.get('p95'), 1)} ms"
                for stage, v in answers["latency_ms"].items()
            )
            + ".",
            "",
        ]
        out += _judgement_lines(answers)
        misses = [
            item for item in answers.get("items", []) if item.get("citation_precision") == 0.0
        ]
        if misses:
            out += [f"Answers citing none of the expected documents ({len(misses)}), e.g.:", ""]
            out += [
                f"- {m['question'][:120]} — expected {', '.join(m['expected'])[:80]}; cited "
                f"{', '.join(dict.fromkeys(m['cited']))[:120]}"
                for m in misses[:_WINS_SHOWN]
            ]
            out.append("")
    comparison = results.get("comparison")
    if comparison:
        out += ["## Against the previous run", ""]
        out.append(
            f"Previous run `{comparison['previous_run']}`, tolerance {comparison['tolerance']}."
        )
        if comparison["regressions"]:
            out.append("")
            out.append("**Regressions:**")
            for r in comparison["regressions"]:
                out.append(
                    f"- {r['mode']} {r['metric']}: {_fmt(r['previous'])} → {_fmt(r['current'])} "
                    f"({r['delta']:+.4f})"
                )
        else:
            out.append("No regression beyond the tolerance.")
        out.append("")
    comparators = _comparators(results)
    if comparators:
        out += ["## Wins and losses of the default pipeline (per-query nDCG@10)", ""]
        out.append(
            _md_table(
                ["against", "wins", "losses", "ties"],
                [[m, *map(str, _tally(results, m))] for m in comparators],
            )
        )
        texts = results.get("query_text", {})
        for other in _closest(results, comparators):
            wins, losses = wins_and_losses(results, other)
            for title, items in (("wins", wins), ("losses", losses)):
                if items:
                    out += ["", f"Largest {title} against {other}:", ""]
                    out += [
                        f"- {_fmt(a)} vs {_fmt(b)}: {texts.get(q, q)[:160]}" for q, a, b in items
                    ]
        out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{name}](plots/{name}.png)" for name in plots]
        out.append("")
    return "\n".join(out)


# Figures, first citations and refusals: (key, column header) in the table's order.
JUDGEMENTS = (
    ("figure_stated", "figure stated"),
    ("figure_stated_lookup", "look-ups"),
    ("figure_stated_derived", "derived"),
    ("first_citation_document", "1st citation: document"),
    ("first_citation_page", "1st citation: page"),
    ("refusal_recall", "refusal recall"),
    ("refusal_precision", "refusal precision"),
    ("false_refusal_rate", "false refusals"),
)


def _judgement_lines(answers: dict[str, Any]) -> list[str]:
    """The figures / first citations / refusals table, and the answers that missed their
    figure; nothing for a set that judges none of them (no figures, pages or kinds)."""
    if all(answers.get(key) is None for key, _ in JUDGEMENTS):
        return []
    out = [
        f"Figures, first citations and refusals ({answers.get('answerable')} answerable, "
        f"{answers.get('unanswerable')} unanswerable questions):",
        "",
        _md_table([h for _, h in JUDGEMENTS], [[_fmt(answers.get(k)) for k, _ in JUDGEMENTS]]),
        "",
    ]
    items = answers.get("items", [])
    missed = [i for i in items if i.get("figure_stated") is False]
    if missed:
        out += [f"Answers not stating their figure ({len(missed)}), e.g.:", ""]
        out += [
            f"- {m['question'][:120]} — figure {m.get('figure')}; answered "
            f"{' '.join(str(m.get('answer') or '').split())[:120]}"
            for m in missed[:_WINS_SHOWN]
        ]
        out.append("")
    wrong = [i for i in items if i.get("kind") == "unanswerable" and not i.get("refused")]
    if wrong:
        out += [f"Unanswerable questions answered ({len(wrong)}), e.g.:", ""]
        out += [
            f"- {w['question'][:120]} — cited {', '.join(dict.fromkeys(w['cited']))[:100]}"
            for w in wrong[:_WINS_SHOWN]
        ]
        out.append("")
    return out


def html_report(results: dict[str, Any], images: dict[str, bytes]) -> str:
    """The Markdown's content as HTML (tables, lists, embedded plots), no external assets."""
    body: list[str] = []
    in_list = False
    table: list[str] = []

    def flush_table() -> None:
        if not table:
            return
        rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
        head, data = rows[0], rows[2:]
        body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head))
        body.append("</tr></thead><tbody>")
        for row in data:
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
        body.append("</tbody></table>")
        table.clear()

    for line in markdown(results, []).splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("- "):
            if not in_list:
                body.append("<ul>")
                in_list = True
            body.append(f"<li>{html.escape(line[2:])}</li>")
            continue
        if in_list:
            body.append("</ul>")
            in_list = False
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.strip():
            text = html.escape(line).replace("**", "")
            body.append(f"<p>{text}</p>")
    flush_table()
    if in_list:
        body.append("</ul>")
    if images:
        body.append("<h2>Plots</h2>")
        for name, data in images.items():
            encoded = base64.b64encode(data).decode()
            body.append(
                f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">'
                f"<figcaption>{html.escape(_CAPTIONS.get(name, name))}</figcaption></figure>"
            )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
    )
    title = html.escape(f"Evaluation: {results.get('dataset')}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


# --- plots --------------------------------------------------------------------------------

_CAPTIONS = {
    "metrics": "Headline metrics per mode",
    "recall_curve": "Recall@k per mode",
    "latency": "Search latency per query and mode (ms)",
    "wins_losses": "Per-query nDCG@10 of the default pipeline minus each other mode",
}


def _figures(results: dict[str, Any]) -> dict[str, Figure]:
    modes = results.get("modes", {})
    figures: dict[str, Figure] = {}
    scored = [m for m in modes if PRIMARY in modes[m]]
    if scored:
        fig, ax = plt.subplots(figsize=(9, 4))
        names = [m for m in HEADLINE]
        width = 0.8 / len(scored)
        for i, mode in enumerate(scored):
            xs = [j + i * width for j in range(len(names))]
            ax.bar(xs, [modes[mode].get(n, 0.0) for n in names], width, label=mode)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        ax.legend(fontsize=8, ncol=len(scored), loc="upper center", bbox_to_anchor=(0.5, -0.08))
        ax.set_title("Metrics per mode")
        figures["metrics"] = fig

        fig, ax = plt.subplots(figsize=(7, 4))
        for mode in scored:
            ks = [k for k in RECALL_CURVE_KS if f"recall@{k}" in modes[mode]]
            ax.plot(ks, [modes[mode][f"recall@{k}"] for k in ks], marker="o", label=mode)
        ax.set_xscale("log")
        ax.set_xticks(list(RECALL_CURVE_KS), [str(k) for k in RECALL_CURVE_KS])
        ax.set_xlabel("k")
        ax.set_ylabel("Recall@k")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Recall@k")
        figures["recall_curve"] = fig

    samples = {m: v for m, v in results.get("latency_samples", {}).items() if v}
    if samples:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.boxplot(list(samples.values()), showfliers=True)
        ax.set_xticks(range(1, len(samples) + 1), list(samples), rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms per query")
        ax.set_title("Search latency")
        figures["latency"] = fig

    comparators = _comparators(results)
    ours = results.get("per_query", {}).get(results.get("default_mode", ""), {})
    if comparators and ours:
        fig, ax = plt.subplots(figsize=(8, 4))
        for other in comparators:
            theirs = results["per_query"][other]
            diffs = sorted((ours[q] - theirs[q] for q in ours if q in theirs), reverse=True)
            ax.plot(range(len(diffs)), diffs, label=other)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel("queries, sorted by difference")
        ax.set_ylabel("Δ nDCG@10 (default − other)")
        ax.legend(fontsize=8)
        ax.set_title(f"{results.get('default_mode')}: per-query wins (>0) and losses (<0)")
        figures["wins_losses"] = fig
    return figures
