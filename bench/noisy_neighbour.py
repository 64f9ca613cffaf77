"""Noisy neighbour (issue #8): does one tenant hammering the service raise another
tenant's latency, and by how much?

    .venv/bin/python bench/noisy_neighbour.py [--duration 20] [--hammer-clients 32]
        [--flood-rate 200] [--endpoint query|search] [--limiter redis|memory]
        [--refusal-memory-s 0,1]

Two tenants (A and B) each get the first ``--passages`` SciFact abstracts indexed in a
throw-away data dir, then ``ragkb serve`` runs over it on loopback with the rate limiter
in Redis (127.0.0.1:6379; the limiter's key prefix is fixed, ``ragkb:rl:``, but its keys
carry the fresh tenants' and keys' random ids, so nothing is shared with anyone else's) or
in process. Tenant B (its rate raised, its concurrency the default) asks SciFact claims
with ``--b-clients`` closed-loop clients and its p50/p95 are measured:

1. alone;
2. while A floods at ``--flood-rate`` requests/s with its key limited to 1 request/s:
   nearly every request of A is refused (429), so this is the cost of refusing;
3. while A hammers with ``--hammer-clients`` closed-loop clients at the default limits
   (20 requests/s per key, 4 questions in flight): A gets its allowed share, the rest 429;
4. while A asks within raised limits (rate unlimited, ``--raised-concurrency`` questions in
   flight, as many clients): every request of A is served;
5. alone again.

All of it once per value of ``--refusal-memory-s`` (the server's
``rate_limit_refusal_memory_s``; one server each, same corpus), so the refusal memory's
effect is a ratio within one run. A runs in a forked process, so its client threads do
not share the measuring process's GIL; the server's and A's CPU use are reported.
Writes ``bench/results/noisy_neighbour_<endpoint>_<limiter>.json``; the last line is the
summary.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    UNLIMITED_RATES,
    Call,
    Samples,
    closed_loop,
    closed_loop_cpu,
    cpu_seconds,
    in_subprocess,
    load_average,
    machine,
    query_calls,
    ratio,
    running_server,
    scifact_queries,
    search_calls,
    write_result,
)
from bench.query_concurrency import prepare_corpus

REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Hammer:
    """Tenant A's load: ``clients`` closed-loop clients, at most ``rate_per_s`` together."""

    clients: int
    rate_per_s: float | None = None


def hammer_while(
    base_url: str,
    b_headers: dict[str, str],
    b_calls: list[Call],
    b_clients: int,
    a_headers: dict[str, str] | None,
    a_calls: list[Call],
    hammer: Hammer | None,
    duration_s: float,
) -> tuple[Samples, tuple[Samples, float] | None]:
    """B's samples over ``duration_s`` while A (if any) hammers from another process,
    starting 2 s before B and stopping 2 s after; A's samples come with the CPU seconds
    its clients used."""
    if a_headers is None or hammer is None:
        return closed_loop(base_url, b_headers, b_calls, b_clients, duration_s), None
    box: dict[str, tuple[Samples, float]] = {}

    def flood() -> None:
        box["a"] = in_subprocess(
            closed_loop_cpu,
            base_url,
            a_headers,
            a_calls,
            hammer.clients,
            duration_s + 4,
            120.0,
            None,
            hammer.rate_per_s,
        )

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    time.sleep(2)
    b = closed_loop(base_url, b_headers, b_calls, b_clients, duration_s)
    thread.join()
    return b, box.get("a")


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ragkb-noisy-"))
    data_dir = work / "data"
    runs: list[dict[str, Any]] = []
    try:
        slug_a = prepare_corpus(data_dir, args.passages, "bench-tenant-a")
        slug_b = prepare_corpus(data_dir, args.passages, "bench-tenant-b")
        for memory_s in args.refusal_memory_s:
            print(f"\nrate_limit_refusal_memory_s={memory_s}", flush=True)
            phases = run_server(args, data_dir, slug_a, slug_b, memory_s)
            alone = [p["b"] for p in phases if p["a"] is None]
            base_p50 = min(p["p50"] for p in alone)
            base_p95 = min(p["p95"] for p in alone)
            for p in phases:
                p["b_p50_ratio"] = ratio(p["b"]["p50"], base_p50)
                p["b_p95_ratio"] = ratio(p["b"]["p95"], base_p95)
            runs.append({"refusal_memory_s": memory_s, "phases": phases})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"runs": runs}


def run_server(
    args: argparse.Namespace, data_dir: Path, slug_a: str, slug_b: str, memory_s: float
) -> list[dict[str, Any]]:
    """The phases against one server (with ``memory_s`` as its refusal memory)."""
    queries = scifact_queries()
    calls = (
        query_calls if args.endpoint == "query" else (lambda qs: search_calls(qs, "hybrid", True))
    )
    # B asks the first half of the claims, A the second half (no shared cache hits).
    b_calls, a_calls = calls(queries[:150]), calls(queries[150:])
    phases: list[dict[str, Any]] = []
    settings: dict[str, Any] = {
        "redis_url": REDIS_URL if args.limiter == "redis" else None,
        "rate_limit_refusal_memory_s": memory_s,
    }
    with running_server(data_dir, **settings) as server:
        raised = {**UNLIMITED_RATES, "max_concurrent_queries": args.raised_concurrency}
        defaults = {k: None for k in raised}
        # B stays within its limits: its rate is raised (one closed-loop client asks
        # faster than the default 20/s per key), its concurrency is the default.
        b_limits = {k: v for k, v in raised.items() if k.startswith("rate_")}
        key_b = server.tenant_key(slug_b, create=False, limits=b_limits)
        key_a = server.tenant_key(slug_a, create=False, limits=defaults)
        b_headers = {"Authorization": f"Bearer {key_b}"}
        a_headers = {"Authorization": f"Bearer {key_a}"}
        for headers, cs in ((b_headers, b_calls[-10:]), (a_headers, a_calls[-10:])):
            closed_loop(server.base_url, headers, cs, 1, 3)  # warm up
        n, rate = args.hammer_clients, args.flood_rate
        refused = {**defaults, "rate_limit_key_rps": 1, "rate_limit_key_burst": 1}
        plan: list[tuple[str, Hammer | None, dict[str, Any] | None]] = [
            ("B alone", None, None),
            (f"A floods {rate:.0f} req/s, ~all refused (1 req/s limit)", Hammer(n, rate), refused),
            (f"A floods, default limits ({n} clients, closed loop)", Hammer(n), defaults),
            (
                f"A within raised limits ({args.raised_concurrency} clients, "
                f"{args.raised_concurrency} in flight)",
                Hammer(args.raised_concurrency),
                raised,
            ),
            ("B alone again", None, None),
        ]
        for name, hammer, limits in plan:
            if limits is not None:
                server.set_limits(slug_a, limits)
            load = load_average()
            cpu_before, wall_before = cpu_seconds(server.pid), time.perf_counter()
            b, hammered = hammer_while(
                server.base_url,
                b_headers,
                b_calls,
                args.b_clients,
                a_headers if hammer else None,
                a_calls,
                hammer,
                args.duration,
            )
            wall = time.perf_counter() - wall_before
            a, a_cpu = hammered if hammered else (None, 0.0)
            phase = {
                "phase": name,
                "b": b.summary(args.duration),
                "a": a.summary(args.duration + 4) if a else None,
                "load_avg": load,
                # Cores busy on average: the server, and A's client process.
                "server_cores": round((cpu_seconds(server.pid) - cpu_before) / wall, 2),
                "a_client_cores": round(a_cpu / wall, 2),
            }
            phases.append(phase)
            print(_row(phase), flush=True)
    return phases


def _row(p: dict[str, Any]) -> str:
    b, a = p["b"], p["a"]
    a_part = (
        f"{a['requests_per_s']:.0f} | {a['ok_per_s']:.1f} | {a['status'].get('429', 0)}"
        if a
        else "- | - | -"
    )
    return (
        f"| {p['phase']} | {b['p50']:.0f} | {b['p95']:.0f} | {b['ok_per_s']:.1f} "
        f"| {b['requests'] - b['ok']} | {a_part} | {p['server_cores']} "
        f"| {p['a_client_cores']} | {p['load_avg']} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds B is measured.")
    parser.add_argument("--passages", type=int, default=500)
    parser.add_argument("--endpoint", choices=["query", "search"], default="query")
    parser.add_argument("--limiter", choices=["redis", "memory"], default="redis")
    parser.add_argument("--b-clients", type=int, default=1)
    parser.add_argument("--hammer-clients", type=int, default=32)
    parser.add_argument("--raised-concurrency", type=int, default=8)
    parser.add_argument(
        "--flood-rate", type=float, default=200.0, help="A's paced flood, requests/s."
    )
    parser.add_argument(
        "--refusal-memory-s",
        default="1",
        help="Comma-separated values of rate_limit_refusal_memory_s, one server each "
        "(0: refusals go through authentication and the limiter every time).",
    )
    args = parser.parse_args(argv)
    args.refusal_memory_s = [float(v) for v in args.refusal_memory_s.split(",")]
    print(f"machine: {machine()}; load average {load_average()}")
    print(f"endpoint /v1/{args.endpoint}, limiter {args.limiter}")
    print(
        "| phase | B p50 ms | B p95 ms | B ok/s | B not ok | A req/s | A ok/s | A 429 "
        "| server cores | A client cores | load avg |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    result = run(args)
    result.update(vars(args))
    write_result(f"noisy_neighbour_{args.endpoint}_{args.limiter}", result)
    print("\n| refusal memory s | phase | B p50 / alone | B p95 / alone |")
    print("| ---: | --- | ---: | ---: |")
    for r in result["runs"]:
        for p in r["phases"]:
            print(
                f"| {r['refusal_memory_s']} | {p['phase']} | {p['b_p50_ratio']} "
                f"| {p['b_p95_ratio']} |"
            )
    worst = [
        (r["refusal_memory_s"], max(r["phases"], key=lambda p: p["b_p95_ratio"]))
        for r in result["runs"]
    ]
    print(
        f"noisy_neighbour (/v1/{args.endpoint}, {args.limiter} limiter): worst B p95 ratio "
        + "; ".join(
            f"{w['b_p95_ratio']} with refusal memory {m} s ({w['phase']})" for m, w in worst
        )
        + f"; load average {load_average()}"
    )


if __name__ == "__main__":
    main()
