"""Load test of the ranking app as `align annotate serve` runs it: the server in its own
process, N annotators speaking its HTTP API (form login, then /api/v1/<name>, or with --api gradio
Gradio's /gradio_api/run/<name> that gradio_client uses) from this one.

    python bench/annotate_load.py [--db sqlite postgresql] [--annotators 50] [--items 400] [--quota 2]
                                  [--pause 1.0] [--paced-items 10] [--pg-url URL] [--processes 1]
                                  [--api rest|gradio]

Two phases per database, each on a fresh database and a fresh server:
- closed loop: every annotator fetches and submits as fast as the server answers, until every
  item has its quota. Prints submits/s and submit (and fetch) latency p50/p95/max.
- paced: every annotator fetches an item, reads it for --pause seconds, submits, --paced-items
  times, starting at a random moment of the first pause. Prints the same; this is what a team
  of people looks like to the server.
After each phase it checks the database: every item exactly at its quota (closed loop), no
annotator twice on one item, as many rankings as submits acknowledged, no errors.

PostgreSQL: --pg-url, else $ALIGN_TEST_PG_URL (.ci/services.sh prints it). Its annotation
tables are dropped and recreated: point it at a scratch database. --processes N serves the
PostgreSQL phases from N app processes (annotators spread over them, sticky) to show that
several processes share one database safely.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_ui import rest  # noqa: E402
from annotation_ui.guard import origin_of  # noqa: E402
from annotation_ui.store import Base, Store  # noqa: E402
from annotation_ui.testing import (  # noqa: E402
    api_result,
    percentile,
    rest_result,
    sample_items,
    serving_processes,
)

PASSWORD = "load-pw-1"


@dataclass
class Phase:
    submit_latencies: list[float] = field(default_factory=list)
    fetch_latencies: list[float] = field(default_factory=list)
    submitted: list[tuple[str, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def fresh_store(db: str, quota: int, names: list[str], items: int, k: int) -> Store:
    store = Store(db, quota=quota)
    if not store.is_sqlite:  # a scratch database: start from empty tables
        Base.metadata.drop_all(store.engine)
        Base.metadata.create_all(store.engine)
    for name in names:
        store.add_annotator(name, PASSWORD)
    store.add_items(sample_items(items, k=k))
    return store


async def call(client: httpx.AsyncClient, api: str, api_name: str, who: str, *args):
    if api == "rest":  # annotation_ui.rest: /api/v1/<name> with named fields
        response = await client.post(f"{rest.PREFIX[1:]}/{api_name}", json=rest.body(api_name, args))
        return rest_result(response, f"{api_name} for {who}")
    # Gradio's API (gradio_client's): one Gradio session per annotator, as the page and
    # gradio_client keep (a call without one makes Gradio build a fresh session state each time)
    response = await client.post(f"gradio_api/run/{api_name}", json={"data": list(args), "session_hash": who})
    return api_result(response, f"{api_name} for {who}")


async def run_phase(
    urls: list[str], names: list[str], pause: float, per_annotator: int | None, api: str = "rest"
) -> Phase:
    """Log everyone in (not timed), then let them fetch and submit; closed loop when pause is 0."""
    phase = Phase()
    limits = httpx.Limits(max_connections=4)
    clients = {
        name: httpx.AsyncClient(
            base_url=urls[i % len(urls)], timeout=120, limits=limits, headers={"Origin": origin_of(urls[i % len(urls)])}
        )
        for i, name in enumerate(names)
    }

    # not all at once: from one address (this bench), the login throttle lets at most 20 tries be
    # under way at a time (annotation_ui.throttle); people behind a proxy each have their own
    signing_in = asyncio.Semaphore(8)

    async def login(name: str) -> None:
        async with signing_in:
            response = await clients[name].post("login", data={"username": name, "password": PASSWORD})
        if response.status_code != 200:
            raise SystemExit(f"login of {name} refused ({response.status_code})")

    async def annotate(name: str, offset: float) -> None:
        client = clients[name]
        await asyncio.sleep(offset)
        done = 0
        try:
            while per_annotator is None or done < per_annotator:
                start = time.perf_counter()
                item = await call(client, api, "fetch", name)
                phase.fetch_latencies.append(time.perf_counter() - start)
                if item["item_id"] is None:
                    break
                if pause:
                    await asyncio.sleep(pause)
                ranks = [1 + (i + len(name)) % len(item["responses"]) for i in range(len(item["responses"]))]
                start = time.perf_counter()
                await call(client, api, "submit", name, item["item_id"], ranks, False, "")
                phase.submit_latencies.append(time.perf_counter() - start)
                phase.submitted.append((name, item["item_id"]))
                done += 1
        except Exception as exc:  # counted and printed: a lost submit is what this bench is for
            phase.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    await asyncio.gather(*(login(n) for n in names))
    start = time.perf_counter()
    # paced: people do not all start in the same millisecond; each starts at a random moment of
    # the first pause (seeded), then keeps its own rhythm
    rng = random.Random(0)
    await asyncio.gather(*(annotate(n, rng.uniform(0, pause)) for n in names))
    phase.seconds = time.perf_counter() - start
    await asyncio.gather(*(c.aclose() for c in clients.values()))
    return phase


def check(store: Store, phase: Phase, quota: int, items: int, closed_loop: bool) -> list[str]:
    """What the database holds against what the annotators were told was saved."""
    stored = store.rankings()
    per_item = collections.Counter(r.item_id for r in stored)
    pairs = collections.Counter((r.annotator, r.item_id) for r in stored)
    problems = []
    if len(stored) != len(phase.submitted):
        problems.append(f"{len(phase.submitted)} submits acknowledged but {len(stored)} rankings stored")
    if any(n > 1 for n in pairs.values()):
        problems.append(f"{sum(n > 1 for n in pairs.values())} annotator-item pairs ranked twice")
    if any(n > quota for n in per_item.values()):
        problems.append(f"{sum(n > quota for n in per_item.values())} items over their quota")
    if closed_loop and (len(per_item) != items or any(n != quota for n in per_item.values())):
        problems.append(f"{sum(n == quota for n in per_item.values())}/{items} items exactly at quota")
    return problems + phase.errors[:5]


def report(label: str, phase: Phase, problems: list[str]) -> None:
    sub, fetch = phase.submit_latencies, phase.fetch_latencies
    rate = len(sub) / phase.seconds if phase.seconds else 0.0
    print(
        f"{label:28s} {len(sub):6d} {rate:9.1f}  {1000 * statistics.median(sub):6.0f} {1000 * percentile(sub, 95):6.0f}"
        f" {1000 * max(sub):6.0f}   {1000 * statistics.median(fetch):6.0f} {1000 * percentile(fetch, 95):6.0f}"
        f"   {'ok' if not problems else 'PROBLEMS'}",
        flush=True,
    )
    for line in problems:
        print("    ", line)


def bench_db(kind: str, url: str | None, args: argparse.Namespace) -> None:
    """Both phases on one kind of database: a new SQLite file each, or the PostgreSQL URL emptied."""
    names = [f"load-{i:03d}" for i in range(args.annotators)]
    processes = args.processes if kind == "postgresql" else 1
    for mode in ("closed loop", "paced"):
        items = args.items if mode == "closed loop" else args.annotators * args.paced_items
        db = url or str(Path(tempfile.mkdtemp(prefix="annotate-load-")) / "load.db")
        store = fresh_store(db, args.quota, names, items, args.responses)
        pause = 0.0 if mode == "closed loop" else args.pause
        per_annotator = None if mode == "closed loop" else args.paced_items
        with serving_processes(
            db, args.quota, max(args.annotators, 1), processes, (f"server.api_threads={args.api_threads}",)
        ) as urls:
            phase = asyncio.run(run_phase(urls, names, pause, per_annotator, args.api))
        label = (
            f"{kind} {mode}"
            + (f" ({processes} procs)" if processes > 1 else "")
            + ("" if args.api == "rest" else " gradio")
        )
        report(label, phase, check(store, phase, args.quota, items, mode == "closed loop"))
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=os.environ.get("ALIGN_TEST_PG_URL"))
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--items", type=int, default=400, help="items of the closed-loop phase")
    parser.add_argument("--quota", type=int, default=2)
    parser.add_argument("--responses", type=int, default=4)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds each annotator reads an item (paced)")
    parser.add_argument("--paced-items", type=int, default=10, help="items each annotator ranks (paced)")
    parser.add_argument("--processes", type=int, default=1, help="app processes on PostgreSQL")
    parser.add_argument("--api-threads", type=int, default=4, help="the server's server.api_threads")
    parser.add_argument(
        "--api", choices=["rest", "gradio"], default="rest", help="/api/v1 (plain JSON) or Gradio's /gradio_api/run"
    )
    args = parser.parse_args()

    print(
        f"{args.annotators} annotators, quota {args.quota}, {args.responses} responses/item, "
        f"paced: {args.pause} s per item x {args.paced_items}; server: `align annotate serve` in its own process; "
        f"API: {'/api/v1' if args.api == 'rest' else '/gradio_api/run'}, server.api_threads={args.api_threads}"
    )
    print(
        f"{'phase':28s} {'submits':>6s} {'per s':>9s}  {'submit ms p50':>13s} {'p95':>6s} {'max':>6s}   fetch p50    p95"
    )
    for kind in args.db:
        if kind == "sqlite":
            bench_db(kind, None, args)
        elif args.pg_url:
            bench_db(kind, args.pg_url, args)
        else:
            print("postgresql: skipped (no --pg-url and no ALIGN_TEST_PG_URL; .ci/services.sh starts one)")


if __name__ == "__main__":
    main()
