"""Atomic file writing: a temp file (or folder) beside the target, flushed, fsynced and renamed into place.

A crash or a full disk never leaves a truncated file under the final name; the error names the file.
Temp files and folders are created with the usual permissions (0666 / 0777 less the umask, so 0644 /
0755 under umask 022), not the owner-only mode of :mod:`tempfile`: a lab's shared results stay readable.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from sparsessp.errors import UserError


class DiskFullError(UserError):
    """No space left (or quota exceeded) while writing an output."""


def _temp_name(target: Path) -> Path:
    return target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"


def remove_stale_temps(target: str | Path) -> None:
    """Remove temporaries of ``target`` that a killed writer left (an interrupted run's half-written file)."""
    target = Path(target)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _new_temp_file(target: Path) -> Path:
    """Create an empty temp file beside ``target`` with mode 0666 less the umask (O_EXCL: never reuses one)."""
    while True:
        tmp = _temp_name(target)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _disk_full(exc: OSError, target: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"disk full while writing {target}; nothing was written there") from None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target`` atomically.

    The temporary file lives in the target's folder (same file system, so the rename is atomic) and
    is removed on any error. ENOSPC / EDQUOT become a one-line :class:`DiskFullError`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_file(target)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _disk_full(exc, target)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder ``target`` (e.g. an OME-Zarr).

    The folder is created with mode 0777 less the umask; on any error it is removed. A ``target`` that
    exists is removed just before the rename (the caller has checked it may be replaced).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target)
    tmp.mkdir(mode=0o777)
    try:
        yield tmp
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _disk_full(exc, target)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))
