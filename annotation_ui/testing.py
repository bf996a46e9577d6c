"""Helpers shared by the tests and bench/annotate_load.py: a live app on a free port, sample items, API load."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from align.config.annotate import AnnotateConfig
from annotation_ui import rest
from annotation_ui.guard import origin_of
from annotation_ui.store import NewItem, Store


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, nearest rank (the benches' latency figures)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


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


@contextlib.contextmanager
def serving_processes(
    db: str, quota: int, concurrency: int, processes: int = 1, overrides: tuple[str, ...] = ()
) -> Iterator[list[str]]:
    """`align annotate serve` in `processes` processes of their own on one database, as a team
    would run it (config `overrides` as key=value); yields their URLs once all answer, stops them afterwards."""
    import subprocess
    import sys

    import httpx

    servers, urls = [], []
    try:
        for _ in range(processes):
            port = free_port()
            command = [sys.executable, "-m", "align", "annotate", "serve", "--db", db, "--port", str(port)]
            command += [f"min_annotations_per_item={quota}", f"server.concurrency={concurrency}", *overrides]
            servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            urls.append(f"http://127.0.0.1:{port}/")
        deadline = time.time() + 180
        for server, url in zip(servers, urls, strict=True):
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"`align annotate serve` exited early: {server.stderr.read()[-2000:]}")
                try:
                    if httpx.get(url, timeout=2).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if time.time() > deadline:
                    raise RuntimeError(f"the server at {url} did not answer within 180 s")
                time.sleep(0.3)
        yield urls
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)


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


def _check(response, what: str) -> None:
    """A refused or failed call raises with the server's message."""
    if response.status_code != 200:
        try:
            message = response.json().get("error")
        except ValueError:
            message = response.text[:300]
        raise RuntimeError(f"{what} failed ({response.status_code}): {message}")


def api_result(response, what: str):
    """The result of one POST /gradio_api/run/<name>."""
    _check(response, what)
    return response.json()["data"][0]


def rest_result(response, what: str):
    """The result of one POST /api/v1/<name>."""
    _check(response, what)
    return response.json()


class HttpAnnotator:
    """One annotator speaking plain HTTP to the app: form login, then the JSON API of
    annotation_ui.rest (POST /api/v1/<name> with the call's fields)."""

    def __init__(self, url: str, name: str, password: str):
        import httpx

        self.name = name
        # the Origin a browser on the app's page sends: the JSON API refuses other sites (annotation_ui.guard)
        self.http = httpx.Client(base_url=url, timeout=120, headers={"Origin": origin_of(url)})
        response = self.http.post("login", data={"username": name, "password": password})
        if response.status_code != 200:
            raise PermissionError(f"login of {name} refused ({response.status_code})")

    def call(self, api_name: str, *args):
        response = self.http.post(f"{rest.PREFIX[1:]}/{api_name}", json=rest.body(api_name, args))
        return rest_result(response, f"{api_name} for {self.name}")

    def close(self) -> None:
        self.http.close()


def run_load(url: str | list[str], names: list[str], password: str, max_per_annotator: int | None = None) -> LoadResult:
    """Each annotator in its own thread logs in and fetches + submits until no item is left.
    Several URLs (app processes on one database): annotators are spread over them, each
    sticking to one, as a load balancer with sticky sessions would."""
    urls = [url] if isinstance(url, str) else url
    submitted: dict[str, list[int]] = {name: [] for name in names}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def annotate(name: str, url: str) -> None:
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
    threads = [threading.Thread(target=annotate, args=(name, urls[i % len(urls)])) for i, name in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(submitted, latencies, errors, time.perf_counter() - start)
