"""Ctrl-C that cannot get lost: a SIGINT raised while Python runs a finaliser (``__del__`` during garbage
collection, frequent while TensorFlow trains) is printed and swallowed by the interpreter. The handler
also sets a flag, and the training loop and the trial loop check it at safe points.

SIGTERM (``kill``, ``timeout``, a batch scheduler ending the job) is handled the same way, so the running
trial is marked interrupted and redone first on resume instead of waiting for the heartbeat to fail it."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

_requested = threading.Event()
_by: list[str] = []  # how the last request came: "Ctrl-C" or "SIGTERM"
_count: list[int] = [0]  # requests since clear(): a second one stops the wrap-up the first one let run
_deferred: list[bool] = [False]  # inside defer() ... undefer(): the flag is set, nothing is raised
_depth: list[int] = [0]  # install()s not yet restore()d: only the outermost restore forgets a request


def _handler(signum, frame) -> None:
    _by[:] = ["SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"]
    _count[0] += 1
    _requested.set()
    if not _deferred[0] or _count[0] > 1:  # a second request stops at once, even a write held for the first
        raise KeyboardInterrupt


def defer() -> None:
    """Until :func:`undefer`, a Ctrl-C/SIGTERM only sets the flag: for a write that must not be cut in two (Optuna
    storing a finished trial, where a KeyboardInterrupt left the trial RUNNING and Optuna's own clean-up failed with
    an UnboundLocalError traceback). The next :func:`check` raises it."""
    _deferred[0] = True


def undefer() -> None:
    """End :func:`defer` (the request it held, if any, stays for :func:`check`)."""
    _deferred[0] = False


def cause() -> str:
    """What stopped the run, for the trial's fail reason: "SIGTERM", else "Ctrl-C"."""
    return _by[0] if _by else "Ctrl-C"


def exit_code() -> int:
    """The shell's code for a run the latest request stopped: 143 (128 + SIGTERM) or 130 (128 + SIGINT)."""
    return 128 + (signal.SIGTERM if cause() == "SIGTERM" else signal.SIGINT)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _quiet_unraisable(hook):
    """``sys.unraisablehook`` that drops the KeyboardInterrupt of our handler raised inside a finaliser (the
    interpreter printed it as 'Exception ignored in: ... Traceback ... KeyboardInterrupt' on Ctrl-C): the flag
    already holds the request, and check() raises it at the next safe point. Anything else goes to ``hook``."""
    def unraisable(args) -> None:
        if isinstance(args.exc_value, KeyboardInterrupt) and _requested.is_set():
            return
        hook(args)
    return unraisable


def install() -> dict[int, Any] | None:
    """Use the flag-setting handler for SIGINT and SIGTERM (main thread only); returns the previous
    handlers, or None."""
    if threading.current_thread() is threading.main_thread():
        _depth[0] += 1
        previous = {sig: signal.signal(sig, _handler) for sig in _SIGNALS}
        previous["unraisablehook"] = sys.unraisablehook
        sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
        return previous
    return None


def restore(previous: dict[int, Any] | None) -> None:
    """Put back the handlers :func:`install` replaced, and, the outermost, forget any request (its :func:`cause`
    stays, for the exit code, until :func:`clear`). An inner one (the trial loop's, inside the search command's)
    keeps it: a request its code swallowed (a SIGTERM raised in a finaliser) after the loop's last check was
    forgotten there, and the search went on to make its final model and exit 0."""
    if previous is not None and threading.current_thread() is threading.main_thread():
        _depth[0] = max(0, _depth[0] - 1)
    if not active():
        _requested.clear()
    if previous is not None and threading.current_thread() is threading.main_thread():
        previous = dict(previous)
        sys.unraisablehook = previous.pop("unraisablehook", sys.unraisablehook)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def active() -> bool:
    """True while a handler :func:`install` set is in place (an outer one: the search command's)."""
    return _depth[0] > 0


def check() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed and its exception was swallowed somewhere."""
    if _requested.is_set():
        raise KeyboardInterrupt


def requested() -> bool:
    """True once Ctrl-C was pressed (until :func:`clear`), also if a library turned it into another error."""
    return _requested.is_set()


def repeated() -> bool:
    """True once a second Ctrl-C/SIGTERM came (until :func:`clear`; :func:`restore` keeps it): it stopped at
    once the wrap-up the first one let run, so the user is told what that leaves undone, not the first line
    again."""
    return _count[0] > 1


def clear() -> None:
    """Forget every request and its cause (a new run starts)."""
    _deferred[0] = False
    _requested.clear()
    _by.clear()
    _count[0] = 0
