"""Whether a process recorded by its pid still runs: a pid is reused after a crash, so its start time is compared."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def start_token(pid: int) -> str | None:
    """``<boot id>/<start time>`` of process ``pid`` (clock ticks since boot, ``/proc/<pid>/stat`` field 22), which
    tells it from a later process given the same pid, also after a reboot; None without /proc or such a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces and parentheses
    if len(fields) < 20:  # fields[0] is field 3 (state): starttime, field 22, is fields[19]
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"{boot}/{fields[19]}"


def pid_namespace() -> str | None:
    """This process's pid namespace (``pid:[4026531836]``), or None without /proc: containers that share a host name
    (host networking) but not their pids differ here, so a pid recorded in one means nothing in another."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def is_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host lives and, given the ``start`` recorded for it (:func:`start_token`), is
    still that process, not a later one given the same pid; by pid alone where its start cannot be read (no /proc,
    or ``start`` None: a record written before start times were kept)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    if start is None:
        return True
    now = start_token(pid)
    return now is None or now == start


def worker_alive(worker: str, started: str | None = None, pidns: str | None = None) -> bool | None:
    """Whether the process a record names (``worker`` = ``host:pid``, with its ``started`` token and ``pidns``, as
    :func:`start_token` and :func:`pid_namespace` gave them) still runs: True or False on this host, None where it
    cannot be seen from here (another host, another container's pid namespace, or no pid in the record)."""
    host, _, pid = str(worker).rpartition(":")
    ours = pid_namespace()
    if host != socket.gethostname() or not pid.isdigit() or int(pid) <= 0 or (pidns and ours and pidns != ours):
        return None
    return is_alive(int(pid), started)
