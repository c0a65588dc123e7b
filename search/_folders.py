"""Why a folder could not be created, in words a user can act on."""

from __future__ import annotations

from pathlib import Path


def why_no_folder(path: Path, exc: OSError) -> str:
    """'X is a file, not a folder' when a file stands where ``path`` or one of its parents should be, else the
    OS's reason (read-only, full disk...)."""
    in_the_way = next((p for p in (path, *path.parents) if p.exists()), None)
    if in_the_way is not None and not in_the_way.is_dir():
        return f"{in_the_way} is a file, not a folder"
    return exc.strerror or str(exc)
