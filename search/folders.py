"""Why a folder could not be created, in words a user can act on."""

from __future__ import annotations

import os
from pathlib import Path


class OutputError(RuntimeError):
    """An output file or folder cannot be written (a file in the way, a read-only folder, a full disk)."""


def why_no_folder(path: Path, exc: OSError) -> str:
    """'X is a file, not a folder' when a file stands where ``path`` or one of its parents should be, else the
    OS's reason (read-only, full disk...)."""
    in_the_way = next((p for p in (path, *path.parents) if p.exists()), None)
    if in_the_way is not None and not in_the_way.is_dir():
        return f"{in_the_way} is a file, not a folder"
    return exc.strerror or str(exc)


def why_not_writable(folder: str | Path) -> str | None:
    """None when ``folder`` is, or can be created as, a folder this process writes to (its first existing
    parent is a writable folder); else why not, in words: checked before a run whose files are written at its
    end. Creates nothing."""
    probe = Path(os.path.abspath(folder))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None
