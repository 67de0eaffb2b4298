"""Atomic file writes: a reader never sees a half-written checkpoint or prepared file."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

LOW_SPACE_BYTES = 1 << 20
"""Free space under which a failed write is reported as a full disk (torch reports ENOSPC as its own error)."""


def write_failure(path: Path, error: BaseException) -> OSError:
    """A one-line OSError saying why `path` could not be written, in words (not a library's internals)."""
    number = getattr(error, "errno", None)
    try:
        full = number == errno.ENOSPC or shutil.disk_usage(_existing_parent(path)).free < LOW_SPACE_BYTES
    except OSError:
        full = False
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EROFS: "read-only file system",
        errno.ENOTDIR: "a folder on its path is a file",
        errno.EEXIST: "a folder on its path is a file",
        errno.EISDIR: "it is a folder",
    }
    if full:
        number, reason = errno.ENOSPC, f"no space left on the device holding {_existing_parent(path)}"
    else:
        reason = reasons.get(number) or (os.strerror(number) if number else str(error).splitlines()[0])
    return OSError(number or errno.EIO, f"cannot write {path}: {reason}")


def _existing_parent(path: Path) -> Path:
    """The nearest existing folder at or above `path`'s parent."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write `path` through `write(file)` into a temporary sibling, fsync it, then rename it in place.

    A crash, a kill or a full disk leaves either the old file or the new one, never a truncated one;
    the temporary file is removed on failure. A failure of the file system (full disk, permissions, a file
    where a folder should be) is raised as a one-line OSError naming `path` and the reason.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_failure(path, error) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        # torch.save reports a full disk as a RuntimeError of its own: recognised by the free space left.
        failure = write_failure(path, error) if isinstance(error, OSError | RuntimeError) else None
        if failure is not None and (isinstance(error, OSError) or failure.errno == errno.ENOSPC):
            raise failure from None
        raise
    return path


def check_output_folder(folder: str | os.PathLike) -> None:
    """Raise a one-line OSError unless `folder` is, or can be created as, a writable folder: it must not be a
    file, lie under one, or lie in a read-only place. Entry points call it on the output folders given on
    their command line before anything else runs (hydra creates its run folder before the job starts)."""
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise OSError(errno.ENOTDIR, f"output folder {folder} {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(errno.EACCES, f"output folder {folder}: {existing} is not writable")


def check_no_earlier_results(folder: Path, patterns: tuple[str, ...], key: str, overwrite: bool) -> None:
    """Refuse, in one line naming `key`, to write results into `folder` when it already holds files matching
    `patterns` from an earlier run, unless `overwrite` (a rerun must never replace results silently)."""
    if overwrite or not folder.is_dir():
        return
    earlier = sorted(path.name for pattern in patterns for path in folder.glob(pattern))
    if earlier:
        shown = ", ".join(earlier[:3]) + (f" and {len(earlier) - 3} more" if len(earlier) > 3 else "")
        raise ValueError(
            f"{key}={folder} already holds results of an earlier run ({shown}): choose another {key}, or pass "
            "overwrite=true to replace them"
        )


def check_output_arguments(arguments: list[str], keys: tuple[str, ...], program: str) -> None:
    """Exit with one line when a `key=value` command-line argument of `keys` names an unusable output folder."""
    for argument in arguments:
        key, _, value = argument.partition("=")
        if key in keys and value:
            try:
                check_output_folder(value)
            except OSError as error:
                raise SystemExit(f"{program}: error: {key}={value}: {error.strerror}") from None
