"""Helpers shared by the tests and bench/annotate_load.py: a live app on a free port, sample items, API load."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from align.config.annotate import AnnotateConfig
from annotation_ui.store import NewItem, Store


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_app(store: Store, config: AnnotateConfig | None = None, port: int | None = None) -> Iterator[str]:
    """Serve the app in this process (background threads) and close it afterwards; yields the URL."""
    from annotation_ui.app import launch

    config = config or AnnotateConfig(min_annotations_per_item=store.quota)
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port or free_port()})})
    blocks, url = launch(store, config, block=False, quiet=True)
    try:
        yield url
    finally:
        blocks.close()


def sample_items(n: int, k: int = 3, prefix: str = "item") -> list[NewItem]:
    """n items of k responses each, with distinct ids and texts."""
    return [
        NewItem(
            prompt=f"Prompt {i}: say something about {i}.",
            responses=[f"response {j} to prompt {i}" for j in range(k)],
            external_id=f"{prefix}-{i}",
        )
        for i in range(n)
    ]


@dataclass
class LoadResult:
    """What N concurrent API annotators did: their submits (item ids) and submit latencies (s)."""

    submitted: dict[str, list[int]]
    latencies: list[float]
    errors: list[str]
    seconds: float


class HttpAnnotator:
    """One annotator speaking plain HTTP to the app: form login, then Gradio's REST API
    (POST /gradio_api/call/<name> -> event id, GET it -> server-sent events)."""

    def __init__(self, url: str, name: str, password: str):
        import httpx

        self.name = name
        self.http = httpx.Client(base_url=url, timeout=120)
        response = self.http.post("login", data={"username": name, "password": password})
        if response.status_code != 200:
            raise PermissionError(f"login of {name} refused ({response.status_code})")

    def call(self, api_name: str, *args):
        event = self.http.post(f"gradio_api/call/{api_name}", json={"data": list(args)})
        event.raise_for_status()
        stream = self.http.get(f"gradio_api/call/{api_name}/{event.json()['event_id']}").text
        kind, data = None, None
        for line in stream.splitlines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
        if kind != "complete":
            raise RuntimeError(f"{api_name} failed for {self.name}: {data}")
        return json.loads(data)[0]

    def close(self) -> None:
        self.http.close()


def run_load(url: str, names: list[str], password: str, max_per_annotator: int | None = None) -> LoadResult:
    """Each annotator in its own thread logs in and fetches + submits until no item is left."""
    submitted: dict[str, list[int]] = {name: [] for name in names}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def annotate(name: str) -> None:
        try:
            api = HttpAnnotator(url, name, password)
            while max_per_annotator is None or len(submitted[name]) < max_per_annotator:
                item = api.call("fetch")
                if item["item_id"] is None:
                    break
                ranks = [1 + (i + len(name)) % len(item["responses"]) for i in range(len(item["responses"]))]
                start = time.perf_counter()
                api.call("submit", item["item_id"], ranks, False, "")
                with lock:
                    latencies.append(time.perf_counter() - start)
                submitted[name].append(item["item_id"])
            api.close()
        except Exception as exc:  # reported to the caller, who decides
            with lock:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

    start = time.perf_counter()
    threads = [threading.Thread(target=annotate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(submitted, latencies, errors, time.perf_counter() - start)
