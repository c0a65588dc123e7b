"""argparse types for numbers, shared by the CLI and the benchmark scripts: a bad value is one usage line
(exit 2) naming the option, before any work, not a traceback after minutes of data loading."""

from __future__ import annotations

import argparse
import math
from typing import Callable


def _parsed(text: str, cast: Callable[[str], float], noun: str):
    """``cast(text)``, or the usage error saying ``text`` is not ``noun``."""
    try:
        return cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def int_at_least(low: int, why: str = "") -> Callable[[str], int]:
    """argparse type: an integer of at least ``low`` (a usage error otherwise, saying ``why`` if given)."""
    def parse(text: str) -> int:
        value = _parsed(text, int, "an integer")
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{f' ({why})' if why else ''}, not {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


#: argparse types of counts: ``--trials 0`` creates a study only; ``--epochs 0`` trains nothing.
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0: seconds, milliseconds, a sampling rate (a usage error otherwise)."""
    value = _parsed(text, float, "a number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, not {text}")
    return value


#: Sampling rates in Hz a beat window is prepared at or read from: a space file's data.fs and `data info --fs`
#: (spaces.schema.DATA_KEYS) take the same.
FS_LOW, FS_HIGH = 50, 1000


#: The largest study seed: numpy and scikit-learn take seeds below 2**32, and the final model's members and fold
#: repeats add to it (seed + 7919 x repeat), so a study's seeds stay within 0..2**31 - 1 with room to spare.
MAX_SEED = 2**31 - 1


def seed(text: str) -> int:
    """argparse type: a study seed, 0..:data:`MAX_SEED` (``--seed -1`` failed in scikit-learn's splitter after the
    study had been written, and the corrected command was then refused as "other settings")."""
    value = _parsed(text, int, "an integer")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be a seed from 0 to {MAX_SEED}, not {value}")
    return value


def seconds_up_to(limit: float) -> Callable[[str], float]:
    """argparse type: a finite number of seconds above 0 and at most ``limit`` (``--heartbeat 1e308`` overflowed
    a timer with a traceback)."""
    return up_to(limit, "seconds")


def up_to(limit: float, unit: str, least: float = 0.0) -> Callable[[str], float]:
    """argparse type: a finite number above 0 (and at least ``least``) and at most ``limit`` ``unit``
    (``bench-server --max-mb 1e308`` overflowed the byte count with a traceback; ``1e-9`` refused every model)."""
    def parse(text: str) -> float:
        value = positive_float(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit:g} {unit}, not {text}")
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least:g} {unit}, not {text}")
        return value

    parse.__name__ = "float"
    return parse


def sampling_rate(text: str) -> float:
    """argparse type: a sampling rate in Hz in [50, 1000] (a usage error otherwise, worded as `data info --fs`'s)."""
    value = _parsed(text, float, "a number")
    if not FS_LOW <= value <= FS_HIGH:
        raise argparse.ArgumentTypeError(f"{value!r} is out of range, expected a sampling rate in Hz in "
                                         f"[{FS_LOW}, {FS_HIGH}]")
    return value


def port(text: str) -> int:
    """argparse type: a TCP port number, 0-65535 (a usage error otherwise)."""
    value = _parsed(text, int, "an integer")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, not {value}")
    return value


def non_empty(what: str) -> Callable[[str], str]:
    """argparse type: a value that is not empty or blank (``--experiment ""``, or ``"$VAR"`` with VAR unset, was
    replaced by the default without a word; ``--experiment "   "`` named an experiment of three spaces)."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"must not be empty: give {what}, or leave the option out")
        return text

    parse.__name__ = "str"
    return parse


def study_name(text: str) -> str:
    """argparse type: a study name, not empty or blank (``--study ""``, or ``--study "$NAME"`` with NAME unset,
    made a study without a name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty: name the study, e.g. --study mitdb-default")
    return text
