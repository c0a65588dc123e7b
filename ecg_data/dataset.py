"""The container every source returns: beat windows with labels, patients and the search/test split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np


@dataclass
class BeatDataset:
    """Beats of one database, ready for training.

    ``X`` (n, length, channels) float32 windows; ``rr`` (n, N_RR_FEATURES) rhythm features; ``y`` 1 = abnormal;
    ``label`` the fine class (AAMI N/S/V/F for MIT-BIH, the record's label elsewhere); ``groups`` the
    patient of each beat (what splits group on); ``records`` the record; ``split`` 'search' or 'test'.
    """

    name: str
    X: np.ndarray
    rr: np.ndarray
    y: np.ndarray
    label: np.ndarray
    groups: np.ndarray
    records: np.ndarray
    split: np.ndarray
    fs: float
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        """One line of counts: the dataclass default printed every array (a screenful in a notebook)."""
        n, shape = len(self), self.X.shape
        parts = ", ".join(f"{part} {int((self.split == part).sum()):,}" for part in ("search", "test"))
        abnormal = f"{100 * float(self.y.mean()):.1f} % abnormal" if n else "no beats"
        return (f"BeatDataset({self.name!r}: {n:,} beats of {shape[1] if n else '?'} samples x "
                f"{shape[2] if n else '?'} channel(s) at {self.fs:g} Hz, {len(np.unique(self.groups)):,} patients, "
                f"{abnormal}; {parts})")

    @property
    def rr_available(self) -> bool:
        """Whether ``rr`` holds real RR-interval features (a source without them, the heartbeat CSVs, sets
        ``info['rr_available'] = False`` and fills ``rr`` with placeholders a model must not be fed)."""
        return bool(self.info.get("rr_available", True))

    def subset(self, mask_or_index: np.ndarray | Sequence[int] | Sequence[bool]) -> "BeatDataset":
        """A new dataset holding only the selected beats (boolean mask or index array)."""
        sel = np.asarray(mask_or_index)
        if sel.size == 0:  # np.asarray([]) is float, which numpy refuses as an index
            sel = sel.astype(np.intp)
        return BeatDataset(self.name, self.X[sel], self.rr[sel], self.y[sel], self.label[sel],
                           self.groups[sel], self.records[sel], self.split[sel], self.fs, dict(self.info))

    def search_part(self) -> "BeatDataset":
        """Beats of the patients the search may see (train and validation folds)."""
        return self.subset(self.split == "search")

    def test_part(self) -> "BeatDataset":
        """Beats of the held-out patients, used once for the final test."""
        return self.subset(self.split == "test")

    def summary(self) -> dict[str, Any]:
        """Counts per split and class, for ``data info`` and run logs."""
        out: dict[str, Any] = {"dataset": self.name, "beats": len(self), "fs": self.fs,
                               "window": int(self.X.shape[1]) if len(self) else None,
                               "channels": int(self.X.shape[2]) if len(self) else None}
        for part in ("search", "test"):
            m = self.split == part
            labels, counts = np.unique(self.label[m], return_counts=True)
            out[part] = {
                "records": int(len(np.unique(self.records[m]))),
                "patients": int(len(np.unique(self.groups[m]))),
                "beats": int(m.sum()),
                "abnormal": int(self.y[m].sum()),
                "classes": {str(k): int(v) for k, v in zip(labels, counts)},
            }
        return out

    def save(self, path: str | os.PathLike | IO[bytes]) -> Path | IO[bytes]:
        """Write the arrays to one ``.npz`` (no pickle: every array is a plain dtype), with the
        :data:`_SAVED_FLAGS` of ``info`` that change what the arrays mean; returns the file written, which is
        ``path`` with ``.npz`` added when it has another ending (as numpy does), what :meth:`load` must be given."""
        if isinstance(path, (str, os.PathLike)):
            path = Path(path)
            if path.suffix != ".npz":
                path = path.with_name(path.name + ".npz")
        flags = {f"info.{k}": np.bool_(self.info[k]) for k in _SAVED_FLAGS if k in self.info}
        # strings as wide as the longest (fixed U8/U32 widths cut a reader's longer class names and patient ids
        # without an error: a cache hit then differed from the miss, and ids sharing 32 characters became one patient)
        np.savez(path, X=self.X, rr=self.rr, y=self.y, label=np.asarray(self.label).astype(str),
                 groups=np.asarray(self.groups).astype(str), records=np.asarray(self.records).astype(str),
                 split=np.asarray(self.split).astype(str), fs=np.float64(self.fs), name=np.str_(self.name), **flags)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike | IO[bytes], info: dict[str, Any] | None = None) -> "BeatDataset":
        """Read a dataset written by :meth:`save` (``allow_pickle=False``); ``info`` adds to its saved flags."""
        with np.load(path, allow_pickle=False) as z:
            flags = {k: bool(z[f"info.{k}"]) for k in _SAVED_FLAGS if f"info.{k}" in z.files}
            return cls(str(z["name"]), z["X"], z["rr"], z["y"], z["label"], z["groups"], z["records"],
                       z["split"], float(z["fs"]), {**flags, **(info or {})})


#: ``info`` keys :meth:`BeatDataset.save` keeps: without them a loaded heartbeat-CSV dataset would claim real
#: RR intervals (its ``rr`` is a placeholder) and hide that its split is beat-level.
_SAVED_FLAGS = ("rr_available", "beat_level_split")


def concat(name: str, parts: list[BeatDataset], fs: float, info: dict[str, Any]) -> BeatDataset:
    """Concatenate per-record datasets into one."""
    if not parts:
        raise ValueError(f"{name}: no beats were read")
    cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts])  # noqa: E731
    return BeatDataset(name, cat("X"), cat("rr"), cat("y").astype(np.int8), cat("label"), cat("groups"),
                       cat("records"), cat("split"), fs, info)
