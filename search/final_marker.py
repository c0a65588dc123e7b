"""The study's record of a search making its final model, and whether that search is still alive: a search killed
during its final training leaves the marker, which ``sync``, ``export`` and the next search read."""

from __future__ import annotations

import time
from typing import Any

from ._process import pid_namespace, worker_alive

#: Study user attr a search sets while it makes its final model (``search.study.run_final``): ``{"trial": N,
#: "worker": "host:pid", "since": epoch seconds, "started": the process's start (:func:`search._process.start_token`,
#: None without /proc), "pidns": its pid namespace (:func:`search._process.pid_namespace`)}``, set back to None when
#: the final test ends, however it ends.
#: ``ecg-automl sync`` leaves the study run RUNNING while that process may be alive (:func:`final_in_progress`).
FINAL_IN_PROGRESS = "final_in_progress"


def final_in_progress(study: Any) -> tuple[dict[str, Any] | None, bool | None]:
    """The study's :data:`FINAL_IN_PROGRESS` marker (None: no search is making its final model) and whether that
    search's process is alive: True or False when it ran on this host, None on another (whose processes cannot be
    seen from here). A search killed during its final training (SIGKILL, the OOM killer, power loss) leaves the
    marker; one stopped with Ctrl-C or SIGTERM clears it. Its pid alive but with another start time than the marker
    records is a later process given the same pid: False (a marker without ``started`` is judged by pid alone)."""
    marker = study.user_attrs.get(FINAL_IN_PROGRESS)
    if not marker:
        return None, None
    return marker, worker_alive(str(marker.get("worker", "")), marker.get("started"), marker.get("pidns"))


def _other_pid_namespace(marker: dict[str, Any]) -> bool:
    """Whether the marker's search ran in another pid namespace than this process (another container with the same
    host name), where its pid cannot be looked up from here; False for a marker that does not record one."""
    theirs, ours = marker.get("pidns"), pid_namespace()
    return bool(theirs and ours and theirs != ours)


#: Study user attr that keeps a :data:`FINAL_IN_PROGRESS` marker found dead on its host (``ecg-automl sync``, or a
#: search or worker starting there), with ``"found"`` (epoch seconds): that final model was never made. ``sync``
#: then ends the study run KILLED and ``export --trial best`` says so; set back to None when a final test is stored.
FINAL_KILLED = "final_killed"


def clear_dead_final(study: Any) -> dict[str, Any] | None:
    """Move a :data:`FINAL_IN_PROGRESS` marker whose search is dead on this host to :data:`FINAL_KILLED` and return
    it, so that later syncs and searches do not find it again; None (nothing changed) when there is no marker or
    its search may be alive (on this host, or on another one, which cannot be seen from here)."""
    marker, alive = final_in_progress(study)
    if marker is None or alive is not False or study.user_attrs.get(FINAL_IN_PROGRESS) != marker:  # one just set
        return None
    killed = {**marker, "found": time.time()}
    study.set_user_attr(FINAL_KILLED, killed)
    study.set_user_attr(FINAL_IN_PROGRESS, None)  # Optuna cannot delete a user attr
    return killed


def marker_since(marker: dict[str, Any]) -> str:
    """When the search of a :data:`FINAL_IN_PROGRESS` (or :data:`FINAL_KILLED`) marker began its final model, as
    local ``YYYY-MM-DD HH:MM`` for a message."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(marker.get("since", 0))))


def _final_running_note(marker: dict[str, Any], alive: bool | None) -> str:
    """What ``sync`` says when it leaves the study run RUNNING for a search still making its final model."""
    worker = str(marker.get("worker", "?"))
    since = marker_since(marker)
    note = (f"study run left RUNNING: the search still appears to be running trial {marker.get('trial', '?')}'s "
            f"final model ({worker}, since {since}); run sync again when it ends")
    if alive is None:
        where = worker.rpartition(":")[0]
        if _other_pid_namespace(marker):
            where += f" (another container: pid namespace {marker['pidns']})"
        note += (f" (from here sync cannot tell whether that process on {where} is alive: if "
                 f"it was killed, run sync there, or run the search command again to make the final model)")
    return note
