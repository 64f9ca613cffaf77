"""Shared parts of the benchmarks (and of ``tests/system/test_load.py``): the machine and its load,
latency percentiles, a real ``ragkb serve`` in a subprocess on loopback, closed-loop HTTP
clients, and the server's resident memory.

The machine is shared and noisy, so every result carries the load average at the time and
alternatives are compared as ratios within one run.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
SHARED_DATA = REPO.parent / "shared" / "data"
# Rates far above what 2 cores can serve: where the limiter must not be what is measured.
UNLIMITED_RATES = {
    "rate_limit_key_rps": 10000,
    "rate_limit_key_burst": 10000,
    "rate_limit_tenant_rps": 10000,
    "rate_limit_tenant_burst": 10000,
}
UNLIMITED = {**UNLIMITED_RATES, "max_concurrent_queries": 64}


# --- the machine -------------------------------------------------------------------------


def load_average() -> str:
    """``uptime``'s three load averages (1, 5, 15 min)."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    """CPU model, cores, memory and Python: the line every result is noted with."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        memory = f", {mem_kb / 2**20:.0f} GiB"
    except (OSError, StopIteration):
        memory = ""
    return f"{model}, {os.cpu_count()} cores{memory}, CPU only, Python {platform.python_version()}"


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``result`` (with the machine) to ``bench/results/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    result.setdefault("machine", machine())
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


# --- latencies ---------------------------------------------------------------------------


def percentiles(ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 (milliseconds; numpy's linear interpolation). Zeros when empty."""
    if not ms:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    values = np.percentile(np.asarray(ms, dtype=float), [50, 95, 99])
    return {
        "p50": round(float(values[0]), 1),
        "p95": round(float(values[1]), 1),
        "p99": round(float(values[2]), 1),
    }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


# --- the server --------------------------------------------------------------------------


def free_port() -> int:
    from tests.support.live_server import free_port as _free_port

    return _free_port()


def server_env(data_dir: Path, admin_key: str, **settings: Any) -> dict[str, str]:
    """The environment of a throw-away server: nothing of the caller's ``RAGKB_*``,
    ``settings`` as ``RAGKB_<NAME>`` (None: left unset), models offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKB_")}
    env.update(
        RAGKB_DATA_DIR=str(data_dir),
        RAGKB_ADMIN_KEY=admin_key,
        RAGKB_LOG_JSON="false",
        RAGKB_LOG_LEVEL="WARNING",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="1",
    )
    for name, value in settings.items():
        if value is not None:
            env[f"RAGKB_{name.upper()}"] = str(value)
    return env


@dataclass
class Server:
    """A running ``ragkb serve`` subprocess."""

    process: subprocess.Popen[bytes]
    base_url: str
    admin_key: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def set_limits(self, slug: str, limits: dict[str, Any]) -> None:
        """Override tenant ``slug``'s limits through the admin API."""
        with httpx.Client(base_url=self.base_url, headers=self.admin_headers, timeout=30) as c:
            c.patch(f"/v1/admin/tenants/{slug}/limits", json=limits).raise_for_status()

    def tenant_key(
        self, slug: str, create: bool = True, limits: dict[str, Any] | None = None
    ) -> str:
        """A fresh API key for tenant ``slug`` (created first when ``create``), with
        ``limits`` overrides set through the admin API."""
        with httpx.Client(base_url=self.base_url, headers=self.admin_headers, timeout=30) as c:
            if create:
                c.post("/v1/admin/tenants", json={"slug": slug}).raise_for_status()
            if limits:
                self.set_limits(slug, limits)
            response = c.post(f"/v1/admin/tenants/{slug}/keys", json={"name": "bench"})
            response.raise_for_status()
            return str(response.json()["key"])


def ragkb_command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("ragkb")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "from api.cli import app; app()", *args]


@contextmanager
def running_server(
    data_dir: Path, *, ready_timeout_s: float = 240, **settings: Any
) -> Iterator[Server]:
    """``ragkb serve`` on a free loopback port over ``data_dir`` until the block ends.

    The database must be migrated first (SQLite in ``data_dir`` migrates itself). Waits for
    ``/readyz``; the server's output goes to ``data_dir/../server.log``.
    """
    admin_key = "bench-admin-" + secrets.token_hex(16)
    port = free_port()
    env = server_env(data_dir, admin_key, **settings)
    log_path = data_dir.parent / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ragkb_command("serve", "--host", "127.0.0.1", "--port", str(port)),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", admin_key, log_path)
    try:
        _wait_ready(server, ready_timeout_s)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"ragkb serve exited ({server.process.returncode}): "
                + server.log_path.read_text(errors="replace")[-3000:]
            )
        try:
            response = httpx.get(server.base_url + "/readyz", timeout=10)
            if response.status_code == 200:
                return
            last = response.text[:500]
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"ragkb serve not ready after {timeout_s:.0f} s: {last}")


PG_ADMIN_DSN = os.environ.get("RAGKB_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def throwaway_postgres(prefix: str = "ragkb_bench") -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, migrated to head, dropped after;
    yields its SQLAlchemy URL."""
    import psycopg

    from core import db as database

    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        database.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (psutil when installed, else /proc)."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_info().rss) / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RSS for {pid}")


class RssSampler:
    """Samples a process's RSS every ``interval_s`` in a thread; ``samples`` are
    (seconds since start, MiB)."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic() - self._started, rss_mib(self.pid)))
            except (OSError, RuntimeError):
                return
            self._stop.wait(self.interval_s)

    def summary(self, until_s: float | None = None) -> dict[str, float]:
        """Start, peak and end RSS, and the slope (MiB/min) over the last half of the run
        (the samples up to ``until_s``): a leak shows as a slope that stays positive once
        the caches are warm."""
        return rss_summary(self.samples, until_s)


def rss_summary(
    samples: Sequence[tuple[float, float]], until_s: float | None = None
) -> dict[str, float]:
    """See :meth:`RssSampler.summary`."""
    if until_s is not None:
        samples = [s for s in samples if s[0] <= until_s]
    if len(samples) < 4:
        return {}
    t = np.array([s[0] for s in samples])
    mib = np.array([s[1] for s in samples])
    half = t >= t[-1] / 2
    slope = float(np.polyfit(t[half], mib[half], 1)[0]) * 60
    return {
        "rss_start_mib": round(float(mib[0]), 1),
        "rss_peak_mib": round(float(mib.max()), 1),
        "rss_end_mib": round(float(mib[-1]), 1),
        "rss_mid_mib": round(float(mib[half][0]), 1),
        "rss_slope_last_half_mib_per_min": round(slope, 2),
    }


# --- clients -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One request a client sends: ``method path`` with a JSON body."""

    path: str
    body: dict[str, Any]
    method: str = "POST"


@dataclass
class Samples:
    """Per request: when it started (s since the run began), its latency (ms), status
    (0: a transport error or timeout)."""

    started: list[float] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def extend(self, other: Samples) -> None:
        self.started += other.started
        self.ms += other.ms
        self.status += other.status
        self.errors += other.errors

    def summary(self, seconds: float) -> dict[str, Any]:
        """Percentiles of the successful (2xx) requests, rates and status counts."""
        ok = [m for m, s in zip(self.ms, self.status, strict=True) if 200 <= s < 300]
        counts: dict[str, int] = {}
        for s in self.status:
            counts[str(s)] = counts.get(str(s), 0) + 1
        return {
            **percentiles(ok),
            "requests": len(self.status),
            "ok": len(ok),
            "ok_per_s": round(len(ok) / seconds, 2) if seconds else 0.0,
            "requests_per_s": round(len(self.status) / seconds, 2) if seconds else 0.0,
            "status": counts,
            "errors": self.errors[:5],
        }


def closed_loop(
    base_url: str,
    headers: dict[str, str],
    calls: Sequence[Call],
    clients: int,
    duration_s: float,
    timeout_s: float = 60.0,
    check: Callable[[httpx.Response], str | None] | None = None,
    rate_per_s: float | None = None,
) -> Samples:
    """``clients`` threads, each sending the next of ``calls`` as soon as its previous
    answer arrived, until ``duration_s`` has passed (requests in flight then finish and
    count). ``check`` may name what is wrong with a 2xx answer (counted as an error).
    ``rate_per_s``: the clients together send at most this many requests per second (each
    on its own schedule; a client that falls behind sends at once)."""
    out = Samples()
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + duration_s

    def client(n: int) -> None:
        mine = Samples()
        i = n
        interval = clients / rate_per_s if rate_per_s else 0.0
        next_at = started + n / rate_per_s if rate_per_s else started
        with httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s) as http:
            while time.perf_counter() < deadline:
                if interval:
                    pause = next_at - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    next_at = max(next_at + interval, time.perf_counter() - interval)
                call = calls[i % len(calls)]
                i += clients
                t0 = time.perf_counter()
                try:
                    response = http.request(call.method, call.path, json=call.body)
                    status = response.status_code
                    problem = check(response) if check and status < 300 else None
                    if problem:
                        mine.errors.append(problem)
                        status = 0
                    elif status >= 500:
                        mine.errors.append(f"{status}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    status = 0
                    mine.errors.append(repr(exc))
                mine.started.append(t0 - started)
                mine.ms.append((time.perf_counter() - t0) * 1000)
                mine.status.append(status)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def closed_loop_cpu(*args: Any) -> tuple[Samples, float]:
    """:func:`closed_loop`, and the CPU seconds this process (the clients) spent on it."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF)
    samples = closed_loop(*args)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return samples, round(cpu, 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    try:
        import psutil

        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    except ImportError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_subprocess(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` in a forked process and return its result: load generators that
    must not share the measuring process's GIL."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("fork")) as pool:
        return pool.submit(fn, *args).result()


def search_calls(queries: Sequence[str], mode: str, rerank: bool, top_k: int = 10) -> list[Call]:
    return [
        Call("/v1/search", {"query": q, "mode": mode, "rerank": rerank, "top_k": top_k})
        for q in queries
    ]


def query_calls(queries: Sequence[str]) -> list[Call]:
    return [Call("/v1/query", {"question": q}) for q in queries]


def scifact_queries(limit: int | None = None) -> list[str]:
    """SciFact test claims (the questions every search benchmark here asks)."""
    rows = [
        json.loads(line)["text"]
        for line in (SHARED_DATA / "scifact" / "queries.jsonl").open(encoding="utf-8")
        if line.strip()
    ]
    return rows[:limit] if limit else rows
