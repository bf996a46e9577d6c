"""Helpers shared by the tests and bench/annotate_load.py: a live app on a free port, sample items."""

from __future__ import annotations

import contextlib
import socket
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
    return [NewItem(prompt=f"Prompt {i}: say something about {i}.", responses=[f"response {j} to prompt {i}" for j in range(k)],
                    external_id=f"{prefix}-{i}") for i in range(n)]
