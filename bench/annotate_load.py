"""Load test of the ranking app on SQLite: N concurrent annotators through the HTTP API.

    python bench/annotate_load.py --annotators 20 --items 200 --quota 2

Prints submits/s and p50/p95 submit latency (the time from POSTing a ranking to its stored
acknowledgement), and checks that every item ended exactly at its quota. The server runs in
this process (as `align annotate serve` does), the annotators in threads.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import tempfile
from pathlib import Path

from align.config.annotate import AnnotateConfig
from annotation_ui.store import Store
from annotation_ui.testing import run_load, running_app, sample_items


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--quota", type=int, default=2)
    parser.add_argument("--responses", type=int, default=4)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="annotate-load-"))
    store = Store(str(folder / "load.db"), quota=args.quota)
    names = [f"load-{i:03d}" for i in range(args.annotators)]
    for name in names:
        store.add_annotator(name, "load-pw")
    store.add_items(sample_items(args.items, k=args.responses))
    config = AnnotateConfig(min_annotations_per_item=args.quota, server={"concurrency": max(args.annotators, 1)})
    with running_app(store, config) as url:
        result = run_load(url, names, "load-pw")

    lat = result.latencies
    per_item = collections.Counter(r.item_id for r in store.rankings())
    print(f"annotators: {args.annotators}  items: {args.items}  quota: {args.quota}  responses/item: {args.responses}")
    print(
        f"rankings stored: {sum(per_item.values())} (expected {args.items * args.quota}); "
        f"items exactly at quota: {sum(1 for c in per_item.values() if c == args.quota)}/{args.items}; errors: {len(result.errors)}"
    )
    print(f"wall time: {result.seconds:.1f} s (logins, fetches and submits)")
    print(f"submits/s: {len(lat) / result.seconds:.1f}")
    print(
        f"submit latency: p50 {1000 * statistics.median(lat):.0f} ms, p95 {1000 * percentile(lat, 0.95):.0f} ms, "
        f"max {1000 * max(lat):.0f} ms"
    )
    for line in result.errors[:5]:
        print("error:", line)


if __name__ == "__main__":
    main()
