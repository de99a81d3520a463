"""One server per SQLite file: an exclusive lock on `<db>.lock`, held for the server's lifetime.

A second server on the same file would read stale rows, miss the first one's live events and recover the
same workflows twice, so it must not start. The lock is `flock` on a side file (not on the database, whose
locks SQLite manages): the kernel releases it when the holder exits, even on kill -9, so a crash never
leaves a stale lock. The file says who holds it (pid and address) for the refusal message, and for
`make run`, which joins the server that owns the file instead of failing.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from ...errors import DatabaseInUse, StartupError


def lock_path(db_path: str) -> Path:
    return Path(f"{db_path}.lock")


def holder(db_path: str) -> dict[str, Any]:
    """What the lock file says about its holder ({} when there is none or it says nothing)."""
    try:
        data = json.loads(lock_path(db_path).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class OwnerLock:
    """`acquire()` or raise DatabaseInUse; `announce(address)` once bound; `release()` at the end."""

    def __init__(self, db_path: str):
        self.db_path = db_path
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> OwnerLock:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StartupError(
                    f"cannot use database {self.db_path}: cannot create its lock file {self.path}: {exc.strerror}"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                info = holder(self.db_path)
                raise DatabaseInUse(self.db_path, info.get("pid"), str(info.get("address") or "")) from None
            # The previous holder unlinks the file as it releases: if we locked a file that is no longer
            # at the path, another server may lock the new one; start over on the file that is there.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                self._write({"pid": os.getpid(), "address": ""})
                return self
            os.close(fd)

    def announce(self, address: str) -> None:
        """Record the address clients reach this server at (known once the port is bound)."""
        self._write({"pid": os.getpid(), "address": address})

    def _write(self, info: dict[str, Any]) -> None:
        if self._fd is None:
            return
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.unlink(self.path)  # while still locked: nobody can be holding the file we remove
        except FileNotFoundError:
            pass
        os.close(fd)  # closing the descriptor releases the flock
