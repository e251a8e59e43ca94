"""Atomic file writing and reading tables users already have (CSV, TSV, Parquet, SMILES).

Every output is written to a temporary file in the same folder and renamed into place, so a
crash never leaves a half-written file that a later run would trust; a folder whose files must
belong together (prep's) is built beside its place and swapped in whole. An output is written
by one process at a time: :func:`output_lock`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from filelock import FileLock, Timeout

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Busy(ValueError):
    """Another process holds a lock this one needs. A ValueError, so the CLI prints its one line
    and exits 2 rather than a traceback."""


def _write_pid(fd: int) -> None:
    """Record the holder in its lock file, so whoever finds the lock taken can say who has it."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def lock_holder(lock_file: Path) -> str:
    """The pid written in a lock file by its holder ('unknown' when it wrote none)."""
    try:
        words = Path(lock_file).read_text().split()
    except OSError:
        return "unknown"
    return words[0] if words and words[0].isdigit() else "unknown"


@contextmanager
def exclusive(lock_file: str | Path, busy: str, timeout: float = 0) -> Iterator[None]:
    """Hold the inter-process lock ``lock_file`` for the block; this process may re-enter it
    (a stage's runner and the stage both lock its output).

    Args:
        lock_file: the lock (created with its folder, deleted when the last hold ends: a
            waiter that locked the deleted file sees that and takes the new one).
        busy: the error when another process holds it past ``timeout``; ``{pid}`` in it becomes
            the holder's pid.
        timeout: seconds to wait for the holder (0: fail at once; negative: wait until free).

    Raises:
        Busy: another process holds the lock.
        ValueError: the lock cannot be created (its folder is a file, or read-only).
    """
    lock_file = Path(lock_file)
    try:
        lock_file.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(lock_file, timeout=timeout, is_singleton=True, on_acquired=_write_pid)
        lock.acquire()
    except Timeout:
        raise Busy(busy.replace("{pid}", lock_holder(lock_file))) from None
    except OSError as err:
        raise ValueError(f"cannot lock {lock_file}: {err.strerror or err}") from None
    try:
        yield
    finally:
        if lock.lock_counter == 1:  # the last hold: delete while held, no file left behind
            with suppress(OSError):
                lock_file.unlink()
        lock.release()


LOCK_SUFFIX = ".molvae.lock"


def output_lock(out: str | Path) -> AbstractContextManager[None]:
    """The lock of a stage's output ``out`` (a folder or a file), failing at once when another
    process writes it: two runs into one folder would mix their inputs.

    The lock is ``.NAME.molvae.lock`` beside ``out``, not inside it: prep swaps its whole folder
    in, and a lock inside would leave with the old folder while a second process locked the
    new one. The real path is locked, so two spellings of one folder share a lock.
    """
    out = Path(os.path.realpath(out))
    return exclusive(out.parent / f".{out.name}{LOCK_SUFFIX}",
                     f"{out} is being written by another molvae process (pid {{pid}})")


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside ``path``; when the block succeeds it takes ``path``'s
    place whole (the old folder renamed away, the new one renamed in, the old one deleted).

    A crash or kill at any moment leaves the old folder whole or the new one whole, never a
    folder whose files come from two runs. The block runs under :func:`output_lock`; leftovers
    of a killed run are cleared first, and an old folder renamed away just before a kill is
    put back. Whatever was at ``path`` is replaced: the caller decides whether it may be.
    """
    path = Path(os.path.realpath(path))
    with output_lock(path):
        _clear_leftovers(path)
        new = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new-"))
        try:
            yield new
            os.chmod(new, 0o777 & ~_UMASK)  # mkdtemp makes 0700; outputs get the usual mode
            _swap_in(new, path)
        finally:
            shutil.rmtree(new, ignore_errors=True)  # still there only when the block failed


def _leftovers(path: Path, kind: str) -> list[Path]:
    return list(path.parent.glob(f".{glob.escape(path.name)}.{kind}-*"))


def _clear_leftovers(path: Path) -> None:
    """Delete what a killed :func:`atomic_folder` left beside ``path`` (a half-built new
    folder, an old one not yet deleted); an old folder without a ``path`` was renamed away
    and the kill came before the new one went in: it is whole, so it goes back."""
    old = sorted(_leftovers(path, "old"), key=lambda p: p.stat().st_ctime)
    if old and not os.path.lexists(path):
        os.rename(old.pop(), path)
    for stale in old + _leftovers(path, "new"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _swap_in(new: Path, path: Path) -> None:
    """Put ``new`` at ``path``: rename the old away, rename the new in, delete the old."""
    if not os.path.lexists(path):
        os.rename(new, path)
        return
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:12]}")
    os.rename(path, old)
    os.rename(new, path)
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


def write_text(text: str, path: str | Path) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(data: Any, path: str | Path) -> Path:
    """Write JSON atomically (non-JSON values such as paths become strings)."""
    return write_text(json.dumps(data, indent=2, default=str), path)


TABLE_FORMATS = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
"""The formats of any table. A table of molecules may also be SDF, which needs chemistry
(:data:`molvae.stages.molecules.MOLECULE_TABLE_FORMATS`), so that molvae.io, which the chemistry
reads files with, never needs the chemistry itself."""


def table_format(path: str | Path, formats: tuple[str, ...] = TABLE_FORMATS) -> str:
    """The format of a table path (one of ``formats``), or a ValueError naming them."""
    name = Path(path).name.lower()
    found = next((f for f in sorted(formats, key=len, reverse=True) if name.endswith(f)), None)
    if found is None:
        raise ValueError(f"cannot write a table to {path}: unknown extension (supported: "
                         f"{', '.join(formats)})")
    return found


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table atomically; the extension picks the format (see TABLE_FORMATS).

    An unknown extension is a ValueError, never a silently different format.
    """
    path = Path(path)
    kind = table_format(path)
    with atomic_path(path) as tmp:
        if kind == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False, sep="\t" if kind.startswith(".tsv") else ",",
                      compression="gzip" if kind.endswith(".gz") else None)
    return path


UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError,
              zlib.error)
"""What reading a truncated, empty or foreign file raises (gzip, zip, pickle, parsers)."""


def unreadable(path: Path, what: str, detail: str) -> ValueError:
    """One line for a person: which file, that it is damaged, and a short why."""
    return ValueError(f"cannot read {path}: not a readable {what}, the file is truncated or "
                      f"corrupt ({detail})")


def load_tensors(path: Path, what: str) -> dict[str, Any]:
    """A ``torch.save`` mapping read with ``weights_only`` (never unpickles code).

    Raises:
        ValueError: one line naming ``path`` when the file is truncated, empty or foreign.
    """
    import torch  # torch costs seconds to import; only model files need it

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as err:  # the UnpicklingError text would advise weights_only=False
        raise unreadable(path, what, type(err).__name__) from None
    if not isinstance(state, dict):
        raise ValueError(f"cannot read {path}: not a {what} (holds a {type(state).__name__})")
    return state


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (names and bytes, in name order: a
    partitioned Parquet table), read in blocks so large tables are fine."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in table_files(path):
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def table_files(path: Path) -> list[Path]:
    """The file itself, or the data files of a partitioned table folder (hidden ones skipped)."""
    if not path.is_dir():
        return [path]
    return sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith((".", "_")))


def is_table_folder(path: Path) -> bool:
    """A folder read as one table: partitioned Parquet (``train.parquet/part.0.parquet``)."""
    return path.is_dir() and _kind(path) == ".parquet"


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet/.smi table (gzipped text too). ``.smi`` gives columns smiles, name.

    Every line is a row, blank ones included (as empty strings), so row numbers stay those of
    the file and no input line vanishes uncounted. A folder of Parquet files reads as one table.

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file when it is truncated, corrupt or not text.
    """
    return pd.concat(list(iter_table(path)), ignore_index=True)


def iter_table(path: str | Path, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """:func:`read_table` in pieces of at most ``rows`` rows (None: one piece), so a file of any
    size can be streamed; always yields at least one (maybe empty) piece."""
    path = Path(path)
    if not (path.is_file() or is_table_folder(path)):
        raise FileNotFoundError(f"file not found: {path}")
    try:
        yield from _iter_table(path, rows)
    except UNREADABLE as err:
        lines = str(err).strip().splitlines() or [type(err).__name__]
        raise unreadable(path, "table", lines[0][:200]) from None


def _kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    return suffixes[-1] if suffixes else ""


def _iter_table(path: Path, rows: int | None) -> Iterator[pd.DataFrame]:
    kind = _kind(path)
    if kind == ".parquet":
        import pyarrow.dataset

        dataset = pyarrow.dataset.dataset(str(path), format="parquet")
        empty = True
        for batch in dataset.to_batches(batch_size=rows or 1 << 30):
            if batch.num_rows:
                empty = False
                yield batch.to_pandas()
        if empty:
            yield dataset.schema.empty_table().to_pandas()
    elif kind in (".smi", ".smiles", ".txt"):
        chunk: list[tuple[str, str]] = []
        pieces = 0
        with _open_text(path) as handle:
            for line in handle:
                parts = line.strip().split(maxsplit=1)
                chunk.append((parts[0] if parts else "", parts[1] if len(parts) > 1 else ""))
                if rows and len(chunk) >= rows:
                    yield pd.DataFrame(chunk, columns=["smiles", "name"])
                    chunk, pieces = [], pieces + 1
        if chunk or not pieces:
            yield pd.DataFrame(chunk, columns=["smiles", "name"])
    else:
        sep = "\t" if kind == ".tsv" else ","
        read = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                           skip_blank_lines=False, chunksize=rows)
        if rows is None:
            yield read
        else:
            with read as pieces:
                yield from pieces


def _open_text(path: Path) -> TextIO:
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt")
    return open(path)
