"""Cheap integrity checks of the files the workflow writes, and quarantine of bad ones.

Every job writes its files atomically (a temporary file, then a rename), so a killed
job leaves no half-written file under its real name. A file can still be damaged
afterwards (a full disk during a copy, a truncating ``cp``, a user's editor, a broken
file system); such a file keeps its timestamp, so Snakemake would treat it as up to
date and the damage would surface only when a later job reads it, possibly after good
results downstream were already deleted for a rerun.

The workflow therefore checks the files a job is about to read while it builds the
DAG (:func:`defect`, in input functions), and moves a damaged one aside
(:func:`quarantine`, to ``<name>.corrupt``): the file is then missing, so the same
Snakemake run regenerates it with the job that produced it. The checks read a few
bytes per file, so that they stay cheap for tens of thousands of files:

* NetCDF-4 / HDF5 (``.nc``): the signature, and the file at least as long as the
  end-of-file address its superblock records (catches every truncation);
* torch checkpoints and ``.npz`` (zip archives): the end-of-central-directory record
  and the central directory (a truncated archive loses them); ``deep=True`` also
  checks every member's CRC (reads the whole file: used before resuming training);
* JSON: parsed whole (the files are small).

Damage that keeps a file's length and structure (flipped bytes inside a NetCDF
variable) is not seen here; the reader then fails naming the file.

This module imports the standard library only: the workflow loads it from its file
while it parses, without importing the package (and torch).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

__all__ = ["defect", "quarantine", "check_files", "QUARANTINE_SUFFIX"]

QUARANTINE_SUFFIX = ".corrupt"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_UNDEFINED = 0xFFFFFFFFFFFFFFFF


def _hdf5_defect(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(96)
    if len(head) < 8:
        return f"{size} bytes: too short for a NetCDF-4 file"
    if head[:8] != _HDF5_SIGNATURE:
        if head[:3] == b"CDF":  # NetCDF-3 classic: no end-of-file record to compare
            return None
        return "no NetCDF-4/HDF5 signature"
    version = head[8]
    if version in (0, 1):
        if len(head) < 16:
            return "truncated superblock"
        offsets = head[13]
        fixed = 24 if version == 0 else 28
        layout = (fixed, fixed + 2 * offsets)  # base address, end-of-file address
    elif version in (2, 3):
        offsets = head[9]
        layout = (12, 12 + 2 * offsets)
    else:
        return f"unknown HDF5 superblock version {version}"
    if offsets not in (4, 8):
        return f"unsupported HDF5 offset size {offsets}"
    fmt = "<I" if offsets == 4 else "<Q"
    base_at, eof_at = layout
    if len(head) < eof_at + offsets:
        return "truncated superblock"
    base = struct.unpack_from(fmt, head, base_at)[0]
    eof = struct.unpack_from(fmt, head, eof_at)[0]
    if eof in (_UNDEFINED, 0xFFFFFFFF):
        return None
    if size < base + eof:
        return f"truncated: {size} bytes, its HDF5 superblock records {base + eof}"
    return None


def _zip_defect(path: Path, deep: bool) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            if deep:
                bad = archive.testzip()
                if bad is not None:
                    return f"member {bad} fails its CRC check"
    except zipfile.BadZipFile as err:
        return f"not a complete zip archive ({err})"
    except (OSError, EOFError, ValueError, RuntimeError) as err:
        return f"unreadable zip archive ({type(err).__name__}: {err})"
    return None


def _json_defect(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        return f"not valid JSON ({err})"
    return None


def defect(path: str | os.PathLike, *, deep: bool = False) -> str | None:
    """What is wrong with the file at ``path``, or ``None`` when it looks intact.

    A missing path is not a defect (``None``: the workflow will create it). A
    directory is checked file by file (its ``.pt``, ``.nc``, ``.npz`` and ``.json``
    files) and reported by the first defect found, naming the file. Suffixes the
    module does not know are only required to be readable, non-empty files.
    """
    path = Path(path)
    if not path.exists():
        return None
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.name.startswith(".") or child.is_dir():
                continue
            if child.suffix in (".pt", ".nc", ".npz", ".json"):
                found = defect(child, deep=deep)
                if found is not None:
                    return f"{child.name}: {found}"
        return None
    try:
        if path.stat().st_size == 0:
            return "empty file"
        if path.suffix == ".nc":
            return _hdf5_defect(path)
        if path.suffix in (".pt", ".npz"):
            return _zip_defect(path, deep)
        if path.suffix == ".json":
            return _json_defect(path)
    except OSError as err:
        return f"unreadable ({err})"
    return None


def quarantine(path: str | os.PathLike) -> Path:
    """Move ``path`` (a file or directory) aside to ``<path>.corrupt`` and return the
    new path; an earlier ``.corrupt`` of the same name is replaced."""
    path = Path(path)
    target = path.with_name(path.name + QUARANTINE_SUFFIX)
    if target.is_dir() and not target.is_symlink():
        import shutil

        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.replace(path, target)
    return target


def check_files(paths, *, deep: bool = False, log=None) -> list[tuple[Path, str]]:
    """Quarantine every damaged file among ``paths``; return ``(path, defect)`` pairs.

    ``log`` (a callable taking one line) is told about each file moved aside.
    """
    moved = []
    for p in paths:
        found = defect(p, deep=deep)
        if found is None:
            continue
        target = quarantine(p)
        moved.append((Path(p), found))
        if log is not None:
            log(f"{p} is damaged ({found}); moved aside to {target}, to be regenerated")
    return moved
