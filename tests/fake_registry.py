"""A package registry on disk for pull tests: a minimal valid wheel served by pip's --find-links,
with pip's own configuration and index switched off (no network), and an empty align cache."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str, files: dict[str, bytes]) -> Path:
    """`<name>-0.1-py3-none-any.whl` in `folder` carrying `files` (path inside -> bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-0.1-py3-none-any.whl"
    info = f"{name}-0.1.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", "")
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def serve_offline(monkeypatch, links: Path, cache: Path) -> None:
    """pip sees only `links`; $ALIGN_CACHE is `cache`."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setenv("ALIGN_CACHE", str(cache))


def offline_env(tmp_path: Path) -> dict[str, str]:
    """The same for a subprocess: an empty registry and an empty cache under tmp_path."""
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(tmp_path / "nothing"), "ALIGN_CACHE": str(tmp_path / "cache")}  # fmt: skip
