"""How a burst of logins affects everyone else on the annotation server: N annotators sign in at
the same moment (each login costs ~30 ms of scrypt) while a probe keeps asking an unrelated,
cheap route (GET /gradio_api/app_id) every 5 ms. Prints the probe's latency p50/p95/max while
idle and during the bursts, and how long each burst took, per database.

    python bench/annotate_login_burst.py [--db sqlite postgresql] [--logins 40] [--bursts 5] [--pg-url URL]

The server runs as `align annotate serve` in its own process (annotation_ui.testing), as a team
runs it, behind the bench as a trusted proxy: each login comes from its own address
(X-Forwarded-For), as a team's would. Goal: the probe's p95 during a burst under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_ui.store import Base, Store  # noqa: E402
from annotation_ui.testing import percentile, sample_items, serving_processes  # noqa: E402

PASSWORD = "burst-pw-1"
PROBE = "gradio_api/app_id"


def probe(url: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            client.get(PROBE).raise_for_status()
            out.append(time.perf_counter() - start)
            time.sleep(0.005)


def burst(url: str, names: list[str]) -> tuple[float, list[int]]:
    """All logins released at once, each from its own address (as people behind a trusted proxy);
    returns (seconds until the last answered, status codes)."""
    gate, codes = threading.Barrier(len(names) + 1), []
    lock = threading.Lock()

    def login(i: int, name: str) -> None:
        address = f"10.1.{i // 200}.{i % 200 + 1}"
        with httpx.Client(base_url=url, timeout=60, headers={"X-Forwarded-For": address}) as client:
            gate.wait()
            code = client.post("login", data={"username": name, "password": PASSWORD}).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=login, args=(i, name)) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, codes


def measure(db: str, logins: int, bursts: int, overrides: tuple[str, ...]) -> dict:
    store = Store(db, quota=2)
    if not store.is_sqlite:  # a scratch database: start from empty tables
        Base.metadata.drop_all(store.engine)
        Base.metadata.create_all(store.engine)
    names = [f"person{i:03d}" for i in range(logins)]
    for name in names:
        store.add_annotator(name, PASSWORD)
    store.add_items(sample_items(4))
    store.close()
    with serving_processes(db, quota=2, concurrency=32, overrides=overrides) as (url,):
        idle: list[float] = []
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(url, stop, idle))
        prober.start()
        time.sleep(2.0)
        stop.set()
        prober.join()
        during: list[float] = []
        seconds, statuses = [], []
        for _ in range(bursts):
            stop = threading.Event()
            prober = threading.Thread(target=probe, args=(url, stop, during))
            prober.start()
            time.sleep(0.05)
            took, codes = burst(url, names)
            stop.set()
            prober.join()
            seconds.append(took)
            statuses += codes
            time.sleep(0.5)
    return {"idle": idle, "during": during, "seconds": seconds, "ok": statuses.count(200), "all": len(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=os.environ.get("ALIGN_TEST_PG_URL"))
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument(
        "--overrides",
        nargs="*",
        default=["server.trusted_proxies=[127.0.0.1]"],
        help="config overrides for the server (default: trust the bench as a proxy, so each login has its address)",
    )
    args = parser.parse_args()
    print(f"{args.logins} simultaneous logins x {args.bursts} bursts; probe GET /{PROBE} every 5 ms; ms")
    print(f"{'database':12} {'idle p50':>9} {'p95':>6} {'burst p50':>10} {'p95':>6} {'max':>6} {'burst s':>8}  logins")
    for kind in args.db:
        if kind == "postgresql":
            if not args.pg_url:
                print("postgresql: skipped (no --pg-url / ALIGN_TEST_PG_URL)")
                continue
            db = args.pg_url
        else:
            db = str(Path(tempfile.mkdtemp()) / "burst.db")
        r = measure(db, args.logins, args.bursts, tuple(args.overrides))
        ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
        print(
            f"{kind:12} {ms(r['idle'], 50):9.1f} {ms(r['idle'], 95):6.1f} {ms(r['during'], 50):10.1f} "
            f"{ms(r['during'], 95):6.1f} {1000 * max(r['during']):6.0f} {sum(r['seconds']) / len(r['seconds']):8.2f}"
            f"  {r['ok']}/{r['all']} ok"
        )


if __name__ == "__main__":
    main()
