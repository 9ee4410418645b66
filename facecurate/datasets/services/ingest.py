"""Domain operations for bringing images into a dataset.

Two halves:

* **accepting** (in the web request for uploads; in the worker for folder and manifest imports):
  each file is copied into the dataset's ``raw/`` folder atomically while hashed, checked
  (empty, not an image, too many pixels, duplicate) and registered as a ``pending`` Image of the job.
  A file that fails gets a per-file error; the rest of the batch goes on.
* **processing** (in the worker, under :mod:`facecurate.jobs.runner`): every pending image of the job
  is decoded, its faces detected (pipeline.recognition.faces) and each kept face aligned, with its crop and
  thumbnail written; then the image is marked ``ok``, ``no_face`` or ``error`` and its Face rows are
  created in the same transaction. Only pending images are touched, so a job whose worker died is
  finished by the next worker without duplicates.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable, Iterator

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from facecurate.jobs.models import Job
from facecurate.jobs.runner import KeepAlive
from facecurate.names import BadName, normalize_name

from ..models import Dataset, Identity
from ..models import Image as StoredImage
from .storage import SpooledUpload, TooLarge

log = logging.getLogger(__name__)

ImageFile.LOAD_TRUNCATED_IMAGES = False
ALLOWED_FORMATS = {"JPEG", "PNG", "PPM", "BMP", "WEBP", "TIFF", "GIF", "MPO"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
FORMAT_SUFFIX = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "PPM": ".pgm", "BMP": ".bmp", "WEBP": ".webp",
                 "TIFF": ".tif", "GIF": ".gif"}
THUMB_SIZE = 128
CROP_SIZE = 112


class IngestError(Exception):
    """A per-file problem: ``code`` is stable (for clients), ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Rejected:
    name: str
    code: str
    reason: str


@dataclass
class Accepted:
    name: str
    image_id: int
    identity: str | None = None


@dataclass
class BatchReport:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def reject(self, name: str, exc: IngestError) -> None:
        self.rejected.append(Rejected(name=name, code=exc.code, reason=exc.message))

    def as_dict(self) -> dict:
        return {
            "accepted": [asdict(a) for a in self.accepted],
            "rejected": [asdict(r) for r in self.rejected],
        }


# --- checking images ----------------------------------------------------------------------------


def _open_checked(path: str | Path) -> Image.Image:
    """Open with Pillow, turning decompression-bomb warnings and oversize into IngestError."""
    limit = int(settings.MAX_IMAGE_PIXELS)
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise IngestError("too_many_pixels", f"image too large (limit {limit} pixels): {exc}") from None
    except UnidentifiedImageError:
        raise IngestError("not_an_image", "not a readable image file") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise IngestError("corrupt_image", f"unreadable image: {exc}") from None
    if img.format not in ALLOWED_FORMATS:
        img.close()
        raise IngestError("unsupported_format", f"image format {img.format} is not supported")
    w, h = img.size
    if w <= 0 or h <= 0:
        img.close()
        raise IngestError("corrupt_image", f"image has no pixels ({w}x{h})")
    if w * h > limit:
        img.close()
        raise IngestError("too_many_pixels", f"image is {w}x{h} = {w * h} pixels, limit {limit}")
    return img


def sniff_image(path: str | Path) -> tuple[int, int, str]:
    """(width, height, Pillow format) from the header only; IngestError when it is no usable image."""
    img = _open_checked(path)
    try:
        return img.size[0], img.size[1], img.format
    finally:
        img.close()


def decode_image(path: str | Path) -> np.ndarray:
    """Fully decode to (H, W, 3) uint8 BGR, EXIF orientation applied; IngestError if corrupt/truncated."""
    img = _open_checked(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise IngestError("corrupt_image", f"image data is corrupt or truncated: {exc}") from None
    finally:
        img.close()
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


# --- accepting files ----------------------------------------------------------------------------


def raw_folder(dataset: Dataset) -> str:
    return f"{dataset.media_dir()}/raw"


def identity_name(name: str | None) -> str:
    """The stored form of an identity name (facecurate.names rules); IngestError when there is none
    (``no_identity``) or it is refused (``bad_identity``)."""
    if not name or not name.strip():
        raise IngestError("no_identity", "a labeled dataset needs an identity for every image")
    try:
        return normalize_name(name, what="identity name")
    except BadName as exc:
        raise IngestError("bad_identity", exc.message) from None


def get_identity(dataset: Dataset, name: str | None, cache: dict | None = None) -> Identity | None:
    """The dataset's identity called ``name`` (normalised, matched ignoring case), made if new."""
    if not dataset.is_labeled:
        return None
    name = identity_name(name)
    key = name.casefold()
    if cache is not None and key in cache:
        return cache[key]
    identity = Identity.objects.filter(dataset=dataset, name__iexact=name).first()
    if identity is None:
        try:
            with transaction.atomic():
                identity = Identity.objects.create(dataset=dataset, name=name)
        except IntegrityError:  # made at the same moment by another job
            identity = Identity.objects.get(dataset=dataset, name__iexact=name)
    if cache is not None:
        cache[key] = identity
    return identity


def accept_stream(
    dataset: Dataset,
    job: Job,
    name: str,
    stream: BinaryIO,
    *,
    identity: str | None,
    seen: dict[str, str],
    identities: dict | None = None,
    max_bytes: int | None = None,
) -> tuple[StoredImage, bool]:
    """Store one file and register it as a pending image of ``job``.

    Returns (face, created). ``created`` is False when this job registered the same file before
    (a re-run). ``seen`` maps sha256 -> name within the batch. Raises IngestError per file.
    """
    try:
        spool = SpooledUpload(stream, raw_folder(dataset), max_bytes=max_bytes)
    except TooLarge as exc:
        raise IngestError("file_too_large", f"file is {exc}") from None
    with spool:
        if spool.size == 0:
            raise IngestError("empty_file", "file is empty (0 bytes)")
        width, height, fmt = sniff_image(spool.tmp_path)
        if spool.sha256 in seen:
            raise IngestError("duplicate", f"same content as {seen[spool.sha256]!r} in this batch")
        existing = StoredImage.objects.filter(dataset=dataset, sha256=spool.sha256).first()
        if existing is not None:
            if existing.job_id == job.id:
                seen[spool.sha256] = name
                return existing, False
            raise IngestError("duplicate", f"same content as image {existing.id} ({existing.source_name!r})")
        # Only a file that passed every check creates its identity: no empty identities from bad files.
        ident = get_identity(dataset, identity, identities)
        rel = spool.commit(f"{spool.sha256}{FORMAT_SUFFIX.get(fmt, '.img')}")
        try:
            with transaction.atomic():
                image = StoredImage.objects.create(
                    dataset=dataset, identity=ident, job=job, source_name=name[:1024], file=rel,
                    sha256=spool.sha256, size_bytes=spool.size, width=width, height=height,
                )
        except IntegrityError:
            raise IngestError("duplicate", "same content as a face added at the same time") from None
        seen[spool.sha256] = name
        return image, True


def is_zip(name: str, stream: BinaryIO) -> bool:
    pos = stream.tell()
    head = stream.read(4)
    stream.seek(pos)
    return head in (b"PK\x03\x04", b"PK\x05\x06") or name.lower().endswith(".zip")


def safe_member_name(name: str) -> str:
    """The entry's path if it is a plain relative path; IngestError for absolute or ``..`` paths."""
    if "\x00" in name:
        raise IngestError("unsafe_path", "entry name contains a NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise IngestError("unsafe_path", "absolute path in archive")
    parts = PurePosixPath(norm).parts
    if any(part == ".." for part in parts):
        raise IngestError("unsafe_path", "'..' in archive path")
    return "/".join(p for p in parts if p not in ("", "."))


def iter_zip(stream: BinaryIO, archive_name: str) -> Iterator[tuple[str, Callable[[], BinaryIO] | IngestError]]:
    """(entry name, opener or IngestError) for each file entry of a zip archive.

    Rejects absolute and ``..`` paths, symlinks, encrypted entries, and entries past the
    archive's uncompressed-size and entry-count limits. Skips folders and macOS metadata.
    """
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise IngestError("bad_archive", f"not a valid zip archive: {exc}") from None
    limit = settings.MAX_ARCHIVE_MB * 1024 * 1024
    total = 0
    count = 0
    with archive:
        for info in archive.infolist():
            label = f"{archive_name}:{info.filename}"
            if info.is_dir():
                continue
            base = PurePosixPath(info.filename.replace("\\", "/")).name
            if info.filename.startswith("__MACOSX/") or base.startswith("._") or base in {".DS_Store", "Thumbs.db"}:
                continue
            count += 1
            try:
                safe_member_name(info.filename)
                mode = (info.external_attr >> 16) & 0o170000
                if mode == stat.S_IFLNK:
                    raise IngestError("symlink", "symbolic links in archives are not accepted")
                if info.flag_bits & 0x1:
                    raise IngestError("encrypted", "encrypted archive entries are not supported")
                if count > settings.MAX_ARCHIVE_ENTRIES:
                    raise IngestError("archive_too_large", f"more than {settings.MAX_ARCHIVE_ENTRIES} entries")
                total += info.file_size
                if total > limit:
                    raise IngestError(
                        "archive_too_large",
                        f"archive expands past FACECURATE_MAX_ARCHIVE_MB={settings.MAX_ARCHIVE_MB}",
                    )
            except IngestError as exc:
                yield label, exc
                continue
            yield label, (lambda info=info: archive.open(info))


def zip_identity(label: str) -> str | None:
    """Identity of a zip entry: its parent folder's name (``Alice/1.jpg`` -> ``Alice``)."""
    member = label.split(":", 1)[1].replace("\\", "/")
    parts = [p for p in PurePosixPath(member).parts if p not in ("", ".")]
    return parts[-2] if len(parts) >= 2 else None


def accept_uploads(dataset: Dataset, job: Job, files: Iterable, *, identity: str | None = None) -> BatchReport:
    """Accept uploaded files (Django UploadedFile objects), zip archives unpacked."""
    report = BatchReport()
    seen: dict[str, str] = {}
    identities: dict = {}
    per_file_limit = settings.MAX_UPLOAD_BYTES
    alive = KeepAlive(job)

    def take(name: str, stream: BinaryIO, ident: str | None) -> None:
        try:
            image, _ = accept_stream(
                dataset, job, name, stream, identity=ident, seen=seen, identities=identities,
                max_bytes=per_file_limit,
            )
        except IngestError as exc:
            report.reject(name, exc)
        except zipfile.BadZipFile as exc:  # CRC or size mismatch while reading an entry
            report.reject(name, IngestError("bad_archive", f"archive entry is corrupt: {exc}"))
        else:
            report.accepted.append(Accepted(name=name, image_id=image.id, identity=ident))
        alive.touch()

    for upload in files:
        name = os.path.basename(upload.name or "upload")
        upload.seek(0)
        if is_zip(name, upload):
            try:
                entries = iter_zip(upload, name)
                for label, item in entries:
                    if isinstance(item, IngestError):
                        report.reject(label, item)
                        continue
                    ident = identity
                    if dataset.is_labeled:
                        ident = zip_identity(label) or identity
                    with item() as member:
                        take(label, member, ident)
            except IngestError as exc:
                report.reject(name, exc)
            continue
        take(name, upload, identity)
    return report


# --- server-side import ------------------------------------------------------------------------


def import_root() -> Path:
    return Path(settings.IMPORT_ROOT).resolve()


def resolve_import_path(rel: str, *, want: str = "dir") -> Path:
    """``rel`` under FACECURATE_IMPORT_ROOT, resolved; IngestError if it escapes the root or is missing."""
    if not isinstance(rel, str) or "\x00" in rel:
        raise IngestError("bad_path", "path must be a string")
    root = import_root()
    candidate = Path(rel)
    if candidate.is_absolute():
        raise IngestError("unsafe_path", "path must be relative to the import root")
    if any(part == ".." for part in candidate.parts):
        raise IngestError("unsafe_path", "'..' is not allowed in import paths")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise IngestError("unsafe_path", "path (or a symlink in it) leads outside the import root")
    if want == "dir" and not resolved.is_dir():
        raise IngestError("not_found", f"no folder {rel!r} under the import root")
    if want == "file" and not resolved.is_file():
        raise IngestError("not_found", f"no file {rel!r} under the import root")
    return resolved


def scan_folder(folder: Path, *, labeled: bool) -> tuple[list[tuple[Path, str, str | None]], list[Rejected]]:
    """Files under ``folder`` as (path, name relative to the import root, identity); symlinks that
    leave the import root and non-image names are rejected. Labeled: identity = parent folder name."""
    root = import_root()
    found: list[tuple[Path, str, str | None]] = []
    rejected: list[Rejected] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        for dname in list(dirnames):
            full = here / dname
            if full.is_symlink():
                target = full.resolve()
                rel = str(full.relative_to(root))
                if not target.is_relative_to(root):
                    rejected.append(Rejected(rel, "unsafe_path", "symlinked folder leads outside the import root"))
                    dirnames.remove(dname)
        for fname in sorted(filenames):
            full = here / fname
            rel = str(full.relative_to(root))
            if fname.startswith("."):
                continue
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(root):
                    rejected.append(Rejected(rel, "unsafe_path", "symlink leads outside the import root"))
                    continue
            if Path(fname).suffix.lower() not in IMAGE_SUFFIXES:
                rejected.append(Rejected(rel, "not_an_image", "file name has no image extension"))
                continue
            identity = full.parent.name if labeled and full.parent != folder else None
            found.append((full, rel, identity))
    if labeled:
        for path, rel, ident in found:
            if ident is None:
                rejected.append(Rejected(rel, "no_identity", "labeled import needs folder-per-identity"))
        found = [f for f in found if f[2] is not None]
    return found, rejected


@dataclass
class ManifestEntry:
    path: str
    identity: str | None = None


def parse_manifest(data: bytes | str | list, *, fmt: str | None = None) -> list[ManifestEntry]:
    """Entries from a CSV (header with ``path`` and optional ``identity``) or JSON manifest
    (a list of ``{"path", "identity"}`` objects or of path strings, or ``{"entries": [...]}``)."""
    if isinstance(data, list):
        items = data
    else:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        stripped = text.lstrip()
        if fmt == "json" or (fmt is None and stripped[:1] in ("[", "{")):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"manifest is not valid JSON: {exc}") from None
            if isinstance(items, dict):
                items = items.get("entries")
        else:
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or "path" not in [f.strip() for f in reader.fieldnames]:
                raise ValueError("CSV manifest needs a header row with a 'path' column")
            items = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not isinstance(items, list):
        raise ValueError("manifest must be a list of entries")
    entries = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not item["path"]:
            raise ValueError(f"manifest entry {i} has no 'path'")
        ident = item.get("identity") or None
        if ident is not None and not isinstance(ident, str):
            raise ValueError(f"manifest entry {i}: identity must be a string")
        entries.append(ManifestEntry(path=item["path"], identity=ident))
    if not entries:
        raise ValueError("manifest has no entries")
    return entries


def check_manifest(dataset: Dataset, entries: list[ManifestEntry]) -> tuple[list[dict], list[Rejected]]:
    """Validate manifest paths against the import root (no file is read yet)."""
    ok, rejected = [], []
    for e in entries:
        try:
            resolve_import_path(e.path, want="file")
            ident = identity_name(e.identity) if dataset.is_labeled else e.identity
        except IngestError as exc:
            rejected.append(Rejected(e.path, exc.code, exc.message))
        else:
            ok.append({"path": e.path, "identity": ident})
    return ok, rejected


def list_import(dataset: Dataset, rel: str) -> tuple[list[dict], list[Rejected]]:
    """What importing folder ``rel`` would take, file by file, as the request sees it: entries
    ``{"path", "identity"}`` and refusals (non-images, unsafe links, bad identity names). Nothing is
    read but names; the worker scans again when it runs and its job's result has the final word."""
    folder = resolve_import_path(rel, want="dir")
    found, rejected = scan_folder(folder, labeled=dataset.is_labeled)
    ok = []
    for _, name, ident in found:
        try:
            ident = identity_name(ident) if dataset.is_labeled else None
        except IngestError as exc:
            rejected.append(Rejected(name, exc.code, exc.message))
        else:
            ok.append({"path": name, "identity": ident})
    return ok, rejected


def register_server_files(
    dataset: Dataset, job: Job, files: list[tuple[str, str | None]], report: BatchReport,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = 64,
) -> None:
    """Copy files (paths relative to the import root) into the dataset as pending images of ``job``."""
    seen: dict[str, str] = {}
    identities: dict = {}
    for start in range(0, len(files), chunk_size):
        # One transaction per chunk (cheap commits). If the worker dies inside a chunk, its rows
        # vanish but its stored files stay (content-addressed): a re-run registers them again.
        with transaction.atomic():
            for i, (rel, ident) in enumerate(files[start:start + chunk_size], start + 1):
                try:
                    path = resolve_import_path(rel, want="file")
                    with open(path, "rb") as fh:
                        image, _ = accept_stream(
                            dataset, job, rel, fh, identity=ident, seen=seen, identities=identities
                        )
                except IngestError as exc:
                    report.reject(rel, exc)
                except OSError as exc:
                    report.reject(rel, IngestError("unreadable", f"cannot read file: {exc.strerror or exc}"))
                else:
                    report.accepted.append(Accepted(name=rel, image_id=image.id, identity=ident))
        if progress:
            progress(min(start + chunk_size, len(files)), len(files))
