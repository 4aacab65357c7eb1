"""Files that are either whole or absent: written under a hidden temporary name and renamed into place."""

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """A hidden temporary path beside `path` for the block to write; when the block ends without error it replaces
    `path` whole, otherwise it is removed. A reader (or a run killed meanwhile) sees the old file or the new one,
    never half of one. The temporary keeps `path`'s suffix, so writers that infer the format from it still work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")  # unique: writers may race
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, data) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """A hard link where the filesystem allows, else a copy. Files here are only ever replaced, never modified in
    place, so a link keeps the content of the moment without copying bytes."""
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links unsupported
        shutil.copy2(source, target)


def snapshot(source: str | Path, target: str | Path) -> None:
    """Place `source` at `target` (replacing it whole) by `link_or_copy`."""
    with atomic_write(target) as tmp:
        link_or_copy(source, tmp)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """`atomic_write` for a folder: a fresh hidden folder beside `path` for the block to fill, renamed to `path` when
    the block ends without error (an existing `path` is moved aside first and deleted last), removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield staging
        if path.exists():
            retired = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            path.rename(retired / path.name)
            staging.rename(path)
            shutil.rmtree(retired)
        else:
            staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
