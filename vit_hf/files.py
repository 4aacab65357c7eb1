"""Files that are either whole or absent: written under a hidden temporary name and renamed into place."""

import json
import os
import shutil
from pathlib import Path


def link_or_copy(source: str | Path, target: str | Path) -> None:
    """A hard link where the filesystem allows, else a copy. Files here are only ever replaced, never modified in
    place, so a link keeps the content of the moment without copying bytes."""
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links unsupported
        shutil.copy2(source, target)


def snapshot(source: str | Path, target: str | Path) -> None:
    """Place `source` at `target` (replacing it whole) by `link_or_copy`."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    link_or_copy(source, tmp)
    os.replace(tmp, target)


def write_json_atomic(path: str | Path, data) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
