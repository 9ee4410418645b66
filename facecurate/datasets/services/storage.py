"""Files under MEDIA_ROOT, always written to a temp file in the target folder and renamed (atomic).

Atomic against a process dying (a reader sees the old file or the whole new one, never half);
no fsync per file, so a power cut may lose the newest files: a re-run of the job rewrites them.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

CHUNK = 1024 * 1024
TMP_PREFIX = ".tmp-"


class TooLarge(Exception):
    pass


def path_under(root: str | Path, rel: str, what: str) -> Path:
    """Absolute path of ``rel`` under ``root``; ValueError for names (or symlinks) that leave it."""
    base = Path(root).resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{rel!r} is outside the {what}")
    return path


def media_path(rel: str) -> Path:
    """Absolute path of a MEDIA_ROOT-relative name; refuses names that leave MEDIA_ROOT."""
    return path_under(settings.MEDIA_ROOT, rel, "media root")


def write_atomic(rel: str, data: bytes) -> str:
    path = media_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise
    return rel


class SpooledUpload:
    """A stream copied into a temp file in ``folder`` while hashing; ``commit(name)`` renames it.

    Use as a context manager: the temp file is removed unless committed.
    """

    def __init__(self, stream: BinaryIO, folder_rel: str, *, max_bytes: int | None = None) -> None:
        folder = media_path(folder_rel)
        folder.mkdir(parents=True, exist_ok=True)
        self.folder_rel = folder_rel
        fd, self.tmp_path = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                while True:
                    chunk = stream.read(CHUNK)
                    if not chunk:
                        break
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"larger than {max_bytes} bytes")
                    digest.update(chunk)
                    fh.write(chunk)
        except BaseException:
            _unlink(self.tmp_path)
            raise
        self.sha256 = digest.hexdigest()
        self.size = size
        self.committed = False

    def commit(self, name: str) -> str:
        rel = f"{self.folder_rel}/{name}"
        os.replace(self.tmp_path, media_path(rel))
        self.committed = True
        return rel

    def discard(self) -> None:
        if not self.committed:
            _unlink(self.tmp_path)

    def __enter__(self) -> "SpooledUpload":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def sweep_temp_files(folder_rel: str, *, older_than_s: float = 3600.0) -> int:
    """Remove temp files a killed process left under ``folder_rel`` (only old ones: a live upload's
    temp file is young). Returns how many were removed."""
    folder = media_path(folder_rel)
    if not folder.is_dir():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for path in folder.rglob(f"{TMP_PREFIX}*"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
