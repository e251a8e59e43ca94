"""The manifest of a prepared folder: which files one ``molvae prep`` run wrote, and their bytes.

A prepared folder is several files (three partitioned splits, the vocabulary, the report) that
are only meaningful together: a vocabulary from one input with splits from another trains a
model on tokens it cannot map, and a report of one input over splits of another lies. Prep
writes ``manifest.json`` last, naming its run id and each file's size and SHA-256, and stamps
the run id into ``vocab.json`` and ``report.json`` too. Readers call :func:`check_prepared` on
the parts they read, and refuse a folder whose parts are not the ones the manifest lists,
naming the file. A folder without a manifest (written by a molvae from before manifests)
still loads, with a warning, so folders that exist keep working.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from molvae.io import file_digest, write_json
from molvae.version import __version__

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
RUN_KEY = "prep_run"  # the run id's key in manifest.json, vocab.json and report.json

_warned: set[str] = set()  # folders already warned about (regress reads three splits)


def _data_files(path: Path, root: Path) -> list[str]:
    """Files under ``path`` (itself, if a file) as paths relative to ``root``; hidden and
    ``_`` entries are skipped at any depth, as Parquet readers skip them."""
    if path.is_file():
        return [path.relative_to(root).as_posix()]
    found = []
    for file in path.rglob("*"):
        relative = file.relative_to(root)
        if file.is_file() and not any(p.startswith((".", "_")) for p in relative.parts):
            found.append(relative.as_posix())
    return sorted(found)


def write_manifest(folder: Path, run_id: str) -> Path:
    """List every file of ``folder`` with its size and SHA-256 under ``run_id``; written last,
    so a manifest exists only for a folder whose every file is in place."""
    files = {name: {"bytes": (folder / name).stat().st_size, "sha256": file_digest(folder / name)}
             for name in _data_files(folder, folder) if name != MANIFEST}
    return write_json({RUN_KEY: run_id, "molvae": __version__, "files": files}, folder / MANIFEST)


def _read_manifest(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
        run_id, files = str(data[RUN_KEY]), dict(data["files"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"cannot read {path}: not a molvae prep manifest "
                         f"({type(err).__name__}: {err})") from None
    return run_id, files


def _stamped_run(path: Path) -> str | None:
    """The prep run id a JSON part carries (vocab.json, report.json), if any."""
    if path.suffix != ".json":
        return None
    try:
        return str(json.loads(path.read_text()).get(RUN_KEY) or "") or None
    except (OSError, ValueError, AttributeError):
        return None


def check_prepared(folder: str | Path, parts: Sequence[str]) -> str | None:
    """Refuse a prepared folder whose ``parts`` do not belong to the prep run its manifest names.

    Args:
        folder: a folder written by ``molvae prep``.
        parts: what the caller reads, e.g. ``["vocab.json", "train.parquet"]`` (a split is
            every file of its folder). A part the folder neither has nor lists is left to the
            caller to report as missing.

    Returns:
        The prep run id, or None for a folder without a manifest (warned about once).

    Raises:
        ValueError: naming the first file that is missing, extra, or not the bytes listed.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        key = str(folder.resolve())
        if key not in _warned:
            _warned.add(key)
            log.warning("%s has no %s (written by a molvae from before manifests): its files "
                        "cannot be checked to come from one prep run; rerun `molvae prep` to "
                        "be sure", folder, MANIFEST)
        return None
    run_id, files = _read_manifest(path)

    def refuse(name: str, why: str) -> ValueError:
        return ValueError(f"{folder}: {name} does not belong with the rest of this prepared "
                          f"folder ({why}; {MANIFEST} is from prep run {run_id}); rerun "
                          "`molvae prep` into it")

    for part in parts:
        listed = {n: e for n, e in files.items() if n == part or n.startswith(f"{part}/")}
        present = _data_files(folder / part, folder) if (folder / part).exists() else []
        for name in present:
            if name not in listed:
                raise refuse(name, f"it is not listed in {MANIFEST}")
        for name, entry in sorted(listed.items()):
            file = folder / name
            if name not in present:
                raise refuse(name, "it is missing")
            stamped = _stamped_run(file)
            if stamped is not None and stamped != run_id:
                raise refuse(name, f"it is from prep run {stamped}")
            if file.stat().st_size != entry.get("bytes") or file_digest(file) != entry.get(
                    "sha256"):
                raise refuse(name, f"its content is not the one {MANIFEST} lists")
    return run_id
