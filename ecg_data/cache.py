"""On-disk cache of preprocessed arrays, keyed by every setting and input file that changes them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

from ._paths import cache_dir
from .dataset import BeatDataset

log = logging.getLogger("ecg_data")

#: Bump when preprocessing changes, so old caches are not reused.
PIPELINE_VERSION = 6


def _fingerprint(path: Path) -> list:
    """Names, sizes and mtimes of the database's files: a changed or repaired record misses the cache."""
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file() and p.suffix.lower() in {".hea", ".dat", ".atr", ".mat", ".csv"}:
            st = p.stat()
            out.append([str(p.relative_to(path)), st.st_size, int(st.st_mtime)])
    return out


def cache_key(name: str, path: Path, settings: dict[str, Any]) -> str:
    """Hex digest over source, pipeline version, settings and file fingerprints."""
    blob = json.dumps({"name": name, "v": PIPELINE_VERSION, "settings": settings,
                       "files": _fingerprint(path)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(name: str, path: Path, settings: dict[str, Any], build: Callable[[], BeatDataset],
           *, use_cache: bool = True, directory: Path | None = None) -> BeatDataset:
    """Return the cached dataset for these settings, or build it and write it atomically."""
    directory = Path(directory) if directory is not None else cache_dir()
    key = cache_key(name, path, settings)
    npz = directory / f"{name}-{key}.npz"
    meta = npz.with_suffix(".json")
    if use_cache and npz.exists() and meta.exists():
        info = json.loads(meta.read_text())
        log.info("using cached %s arrays %s", name, npz)
        ds = BeatDataset.load(npz, info)
        ds.info["cache"] = {"hit": True, "file": str(npz)}
        return ds
    ds = build()
    if use_cache:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = npz.with_name(f".{npz.name}.{os.getpid()}.tmp.npz")
        ds.save(tmp)
        meta_tmp = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
        meta_tmp.write_text(json.dumps({**ds.info, "settings": settings}, default=str))
        os.replace(tmp, npz)
        os.replace(meta_tmp, meta)
    ds.info["cache"] = {"hit": False, "file": str(npz) if use_cache else None}
    return ds
