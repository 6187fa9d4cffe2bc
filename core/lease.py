"""The lake's maintenance lease: one rewriting job at a time (pyarrow.fs and stdlib only).

The lake needs no lock for correctness between writers and readers (see DESIGN.md, rule 3), but
two jobs must not rewrite the same partition at once: compaction merging a file that retention
is purging would write the purged rows back. A lease file serialises the rewriting jobs only -
cron compaction and retention, and the automatic merges of training processes and the
dashboard; writers appending new files and readers never look at it.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow.fs as pafs

from runlake.core import layout
from runlake.core.errors import RunlakeError

# Leases live beside the tables, outside every table directory, so no reader ever lists them.
LEASE_PREFIX = "lease-"
# A held lease is rewritten this often, so its file's modification time says its owner lives.
LEASE_HEARTBEAT_S = 30.0
# A lease whose owner cannot be checked (another host) counts as abandoned once its file has not
# been rewritten for this long: the owner died, or froze for twenty heartbeats.
LEASE_TTL_S = 20 * LEASE_HEARTBEAT_S
# A job that takes over an abandoned lease leaves ``taken-<lease name>`` beside it before
# removing it. The lease's owner may only be frozen, and its heartbeat may have read the lease
# just before the removal and write it back just after: the marker is what tells the owner,
# whatever its lease file says. Markers go with their owner's release, or after this long.
TAKEN_PREFIX = "taken-"
TAKEN_KEPT_S = 7 * 24 * 3600.0


class MaintenanceBusy(RunlakeError):
    """Another compaction or retention job holds the lake's maintenance lease."""


class LeaseLost(RunlakeError):
    """The lease this job held is gone: another job judged it abandoned and took the lake.

    That happens only when the job's process stood still for ``LEASE_TTL_S`` (its heartbeat
    silent) and a job on another host took over. The job stops before its next removal, as if
    it had been killed there: what it wrote beside the files it did not remove folds to the
    same rows (DESIGN.md, rule 3), so nothing is lost or doubled.
    """


# The lease each thread holds (jobs run their steps in the thread that took the lease):
# (filesystem, lease path, set when the heartbeat found the file gone).
_held = threading.local()


def check_held() -> None:
    """Raise ``LeaseLost`` if the lease this thread holds is no longer there; nothing when the
    thread holds none (a writer merging its own files takes no lease).

    Jobs call it before each step that removes files of the lake, so a job that stood still
    past the lease's time to live and woke up does not remove what another job now rewrites.
    It narrows the window to one step; no storage here offers the conditional write that
    would close it.
    """
    held = getattr(_held, "lease", None)
    if held is None:
        return
    fs, path, lost = held
    if not lost.is_set():
        lease, taken = fs.get_file_info([path, _taken_path(path)])
        if lease.type != pafs.FileType.File or taken.type != pafs.FileType.NotFound:
            lost.set()
    if lost.is_set():
        raise LeaseLost(
            "This job's maintenance lease was taken over by another job (the lease went without a "
            f"heartbeat for {LEASE_TTL_S:.0f} s); it stopped before removing anything more. Run it again.",
            lease=path,
        )


@contextmanager
def _holding(fs: pafs.FileSystem, path: str) -> Iterator[None]:
    """Hold ``path`` as this thread's lease for the block: heartbeat, ``check_held``, release."""
    lost = threading.Event()
    previous = getattr(_held, "lease", None)
    _held.lease = (fs, path, lost)
    try:
        with _heartbeat(fs, path, lost):
            yield
    finally:
        _held.lease = previous
        delete_quietly(fs, path)  # a unique name: ours, even if a heartbeat wrote it back
        # A marker of our lease (taken over, whether or not we noticed) is nobody else's.
        delete_quietly(fs, _taken_path(path))


def _taken_path(path: str) -> str:
    directory, name = path.rsplit("/", 1)
    return f"{directory}/{TAKEN_PREFIX}{name}"


def take_over(fs: pafs.FileSystem, path: str, remove: bool = True) -> None:
    """Mark the abandoned lease ``path`` as taken, then (``remove``) delete it.

    The marker comes first, so an owner that was only frozen learns of it at its next
    ``check_held`` or heartbeat even if its heartbeat writes the lease file back after the
    removal: any write of it that lands after the removal landed after the marker too.
    ``runlake doctor --repair`` marks (``remove=False``) before it moves the file away.
    """
    with fs.open_output_stream(_taken_path(path)) as out:
        out.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": layout.now_ms()}).encode())
    if remove:
        delete_quietly(fs, path)


def mark_if_silent(fs: pafs.FileSystem, path: str) -> str:
    """``take_over(path, remove=False)`` if the lease is still there and its owner silent (not
    one of this host's processes that is known dead: such an owner never wakes up). Returns the
    lease's state now: ``"alive"``, ``"dead"`` (or gone) or ``"silent"``."""
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return "dead"
    state = _lease_state(fs, info, time.time())
    if state == "silent":
        take_over(fs, path, remove=False)
    return state


def _is_taken(fs: pafs.FileSystem, path: str) -> bool:
    info: pafs.FileInfo = fs.get_file_info(_taken_path(path))
    return bool(info.type != pafs.FileType.NotFound)


def delete_quietly(fs: pafs.FileSystem, path: str) -> bool:
    """Delete a file; False when it was already gone (another job or a retry removed it)."""
    try:
        fs.delete_file(path)
        return True
    except FileNotFoundError:
        return False


def _lease_alive(fs: pafs.FileSystem, info: pafs.FileInfo, now: float) -> bool:
    return _lease_state(fs, info, now) == "alive"


def _lease_state(fs: pafs.FileSystem, info: pafs.FileInfo, now: float) -> str:
    """``"alive"``; ``"dead"`` when its owner certainly is (or it never was a lease);
    ``"silent"`` when its owner, on another host or unaskable, has not beaten for the TTL."""
    try:
        with fs.open_input_stream(info.path) as stream:
            owner = json.loads(stream.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return "dead"  # released meanwhile, or a torn write that never was a lease
    if owner.get("host") == socket.gethostname():
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return "dead"  # its owner died (SIGKILL, OOM): the lease is abandoned
        except (PermissionError, ValueError, OverflowError):
            pass  # alive under another user, or unreadable: fall back to the age
        else:
            return "alive"
    mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
    return "alive" if now - mtime < LEASE_TTL_S else "silent"


def stale_leases(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    """Lease files whose owner is gone (died, or silent past ``LEASE_TTL_S``); ``runlake doctor`` lists them.

    Harmless as they are (the next job to take the lease removes them), but a person looking
    at a lake that "won't compact" wants to see them.
    """
    directory = layout.LakePaths(root).maintenance_dir()
    now = time.time()
    return [
        info
        for info in fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        if info.type == pafs.FileType.File
        and info.base_name.startswith(LEASE_PREFIX)
        and not _lease_alive(fs, info, now)
    ]


def _try_acquire(fs: pafs.FileSystem, root: str, job: str) -> str | None:
    directory = layout.LakePaths(root).maintenance_dir()
    fs.create_dir(directory, recursive=True)
    name = f"{LEASE_PREFIX}{layout.new_file_id()}"
    path = f"{directory}/{name}.json"
    _write_lease(fs, path, {"host": socket.gethostname(), "pid": os.getpid(), "job": job, "since": layout.now_ms()})
    # Write first, list second: of two jobs racing here, the one that lists later sees both
    # leases and backs off, so at most one proceeds (both backing off is safe; they retry).
    try:
        return _claim(fs, directory, path)
    except BaseException:
        delete_quietly(fs, path)  # left behind, it would count as alive while this process lives
        raise


def _claim(fs: pafs.FileSystem, directory: str, path: str) -> str | None:
    """The lease at ``path`` if no other live lease is in ``directory`` (others taken over or
    removed), else None after removing ``path``."""
    now = time.time()
    listed = fs.get_file_info(pafs.FileSelector(directory))
    taken = {info.base_name[len(TAKEN_PREFIX) :] for info in listed if info.base_name.startswith(TAKEN_PREFIX)}
    for info in listed:
        if info.base_name.startswith(TAKEN_PREFIX):
            if info.mtime is not None and now - info.mtime.timestamp() > TAKEN_KEPT_S:
                delete_quietly(fs, info.path)  # its owner never came back to read it
            continue
        if info.path == path or not info.base_name.startswith(LEASE_PREFIX):
            continue
        # Taken over already (and perhaps written back by a heartbeat of a runlake that does
        # not look for markers): not a live lease, whatever its age.
        state = "dead" if info.base_name in taken else _lease_state(fs, info, now)
        if state == "alive":
            delete_quietly(fs, path)
            return None
        if state == "silent":
            take_over(fs, info.path)  # its owner may only be frozen: tell it
        else:
            delete_quietly(fs, info.path)
    return path


def _write_lease(fs: pafs.FileSystem, path: str, owner: dict[str, object]) -> None:
    directory, name = path.rsplit("/", 1)
    tmp = f"{directory}/{layout.TMP_PREFIX}{name}.{os.getpid()}{layout.TMP_SUFFIX}"
    with fs.open_output_stream(tmp) as out:
        out.write(json.dumps(owner).encode("utf-8"))
    fs.move(tmp, path)


@contextmanager
def _heartbeat(fs: pafs.FileSystem, path: str, lost: threading.Event) -> Iterator[None]:
    """Rewrite the held lease every ``LEASE_HEARTBEAT_S`` until the block ends (a daemon
    thread), so a job on another host can tell a long compaction from a dead one; ``lost`` is
    set when the file is found gone."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(LEASE_HEARTBEAT_S):
            try:
                with fs.open_input_stream(path) as stream:
                    owner = json.loads(stream.read().decode("utf-8"))
            except FileNotFoundError:
                lost.set()
                return  # gone: another job judged it abandoned; never write it back
            except (OSError, ValueError, UnicodeDecodeError):
                continue  # a passing storage error: the next beat tries again
            owner["beat"] = layout.now_ms()
            try:
                _write_lease(fs, path, owner)
                if _is_taken(fs, path):
                    # Taken over; perhaps removed between our read and our write, which then
                    # put it back: remove it again (no job takes a marked lease for a live one).
                    lost.set()
                    delete_quietly(fs, path)
                    return
            except OSError:
                pass  # the next beat tries again

    thread = threading.Thread(target=beat, name="runlake-lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextmanager
def maintenance_lease(fs: pafs.FileSystem, root: str, job: str, wait_s: float = 60.0) -> Iterator[None]:
    """Hold the lake's maintenance lease for the duration of the block.

    Args:
        fs: the lake's filesystem.
        root: the lake root.
        job: a name for people reading the lease file ("compact", "retention").
        wait_s: how long to keep trying while another job holds it.

    Raises:
        MaintenanceBusy: another maintenance job still holds the lease after ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    while True:
        path = _try_acquire(fs, root, job)
        if path is not None:
            break
        if time.monotonic() >= deadline:
            raise MaintenanceBusy(
                f"Another maintenance job (compaction or retention) is running on {root}; try again later",
                job=job,
            )
        time.sleep(random.uniform(0.05, 0.5))  # jitter, so two waiting jobs stop colliding
    with _holding(fs, path):
        yield


@contextmanager
def try_lease(fs: pafs.FileSystem, root: str, job: str) -> Iterator[bool]:
    """Hold the lease for the block if it is free now (yields True), else yield False at once.

    For automatic merges: whoever finds the lease free does the work; the others skip it.
    """
    path = _try_acquire(fs, root, job)
    if path is None:
        yield False
        return
    with _holding(fs, path):
        yield True
