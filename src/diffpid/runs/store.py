"""The result store of a dataset-scale run: one JSON file per item, written atomically.

Layout of one run folder (``ROOT/<name>-<hash of the parameters>/``)::

    run.json            the parameters (and their hash) that define the run
    items.jsonl         the item list of the latest invocation, in item order (id, name)
    results/<id>.json   one record per finished item: done (values) or failed (error)
    maps/<id>.npz       optional arrays of a done item (pixel maps)
    results.jsonl       the merged records in item order, written at the end of a run
    lock                held (``flock``) by the process that runs the folder

Why one file per item and not SQLite: a record is written to a temporary name, flushed
with ``fsync`` and moved into place with ``os.replace``, which is atomic; a process killed
at any instant leaves either the whole old state or the whole new record, never a torn
one. Every record carries the SHA-256 of its content (and of its ``.npz``), so a file
damaged afterwards (copied halfway, truncated by a full disk) is detected on reading and
the item is computed again. Ranks write disjoint files, so there is no write lock to
contend for, and the files work on shared network file systems (NFS, Lustre) where
SQLite's WAL mode, which needs shared memory between its writers, does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from ..errors import ParameterError

RECORD_FORMAT = "diffpid-run-record/1"
RUN_FORMAT = "diffpid-run/1"
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ItemRecord:
    """What the store holds for one item.

    Args:
        id: the item's content id.
        name: the user's label for the item (``None`` when it has none).
        status: ``"done"`` or ``"failed"``.
        values: JSON-ready result of the item's computation (``None`` when failed).
        error_type, error: the :class:`~diffpid.errors.DiffpidError` subclass and its message (failed items).
        seed: the item's seed, derived from the run seed and the id.
        seconds: wall time of the item.
        rank, world: the process that computed it and the number of processes.
        device: where it was computed.
        arrays: ``{name: sha256}`` of the arrays saved in ``maps/<id>.npz`` (empty when none).
    """

    id: str
    name: str | None
    status: str
    values: Any
    error_type: str | None
    error: str | None
    seed: int
    seconds: float
    rank: int
    world: int
    device: str
    arrays: Mapping[str, str]


class CorruptRecord(Exception):
    """A stored record that cannot be trusted (unreadable, truncated, checksum mismatch)."""


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-ready; return numbers, strings, lists and dicts")


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes of ``obj`` (sorted keys, no spaces; numpy scalars and arrays as numbers and lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain).encode()


def digest(data: bytes, length: int = 64) -> str:
    """Hex SHA-256 of ``data``, cut to ``length`` characters."""
    return hashlib.sha256(data).hexdigest()[:length]


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # directories cannot be opened on some platforms
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to ``.<name>.<pid>.tmp`` beside it, are flushed to disk (``fsync``) and
    moved over ``path`` with ``os.replace``; the folder is synced after the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _array_digests(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    out = {}
    for k, v in arrays.items():
        a = np.ascontiguousarray(np.asarray(v))
        out[k] = digest(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return out


class RunStore:
    """Reads and writes the records of one run folder (see the module docstring for the layout).

    Args:
        directory: the run folder (``ROOT/<name>-<hash>``).
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.results = self.directory / "results"
        self.maps = self.directory / "maps"

    def create(self) -> None:
        """Make the folders of the store."""
        self.results.mkdir(parents=True, exist_ok=True)
        self.maps.mkdir(parents=True, exist_ok=True)

    def record_path(self, item_id: str) -> Path:
        return self.results / f"{item_id}.json"

    def arrays_path(self, item_id: str) -> Path:
        return self.maps / f"{item_id}.npz"

    def write(self, record: ItemRecord, arrays: Mapping[str, np.ndarray] | None = None) -> None:
        """Store ``record`` (and its arrays first): the JSON record is the commit point of the item."""
        arrays = dict(arrays or {})
        if arrays:
            record = ItemRecord(**{**asdict(record), "arrays": _array_digests(arrays)})
            write_atomic(self.arrays_path(record.id), _npz_bytes(arrays))
        body = {"format": RECORD_FORMAT, **asdict(record)}
        body["checksum"] = digest(canonical(body))
        write_atomic(self.record_path(record.id), canonical(body))

    def scan(self, ids: Iterable[str]) -> Iterator[tuple[str, ItemRecord | None, bool]]:
        """``(id, record or None, damaged)`` for each id: a damaged record reads as ``None``."""
        for i in ids:
            try:
                yield i, self.read(i), False
            except CorruptRecord:
                yield i, None, True

    def read(self, item_id: str, check_arrays: bool = True) -> ItemRecord | None:
        """The record of ``item_id``; ``None`` when the item has none.

        Raises:
            CorruptRecord: the file is unreadable, truncated, or does not match its checksum
                (or its arrays do not match theirs).
        """
        path = self.record_path(item_id)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise CorruptRecord(f"{path.name}: {err}") from err
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CorruptRecord(f"{path.name}: not valid JSON ({err.__class__.__name__})") from err
        if not isinstance(body, dict) or body.get("format") != RECORD_FORMAT:
            raise CorruptRecord(f"{path.name}: not a {RECORD_FORMAT} record")
        checksum = body.pop("checksum", None)
        if checksum != digest(canonical(body)):
            raise CorruptRecord(f"{path.name}: checksum mismatch")
        body.pop("format")
        try:
            record = ItemRecord(**body)
        except TypeError as err:
            raise CorruptRecord(f"{path.name}: unexpected fields ({err})") from err
        if record.id != item_id:
            raise CorruptRecord(f"{path.name}: holds item {record.id}")
        if check_arrays and record.arrays and _array_digests(self.load_arrays(item_id)) != dict(record.arrays):
            raise CorruptRecord(f"{self.arrays_path(item_id).name}: arrays do not match the record")
        return record

    def load_arrays(self, item_id: str) -> dict[str, np.ndarray]:
        """The arrays saved with ``item_id`` (empty when none).

        Raises:
            CorruptRecord: the ``.npz`` file is missing or unreadable.
        """
        path = self.arrays_path(item_id)
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as err:  # noqa: BLE001 - zipfile/numpy raise many types for a damaged file
            raise CorruptRecord(f"{path.name}: unreadable ({type(err).__name__})") from err

    def remove_temporaries(self) -> list[Path]:
        """Delete temporary files left by killed writers; returns what was removed."""
        removed = []
        for folder in (self.results, self.maps, self.directory):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX):
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed

    def stored_ids(self) -> set[str]:
        """Ids of every record file in the store (valid or not)."""
        if not self.results.is_dir():
            return set()
        return {p.stem for p in self.results.glob("*.json") if not p.name.startswith(".")}

    # ----- run-level files ------------------------------------------------------------------
    def write_parameters(self, parameters: Mapping[str, Any], key: str) -> None:
        """Write ``run.json``, or check that the existing one has the same parameters."""
        path = self.directory / "run.json"
        body = {"format": RUN_FORMAT, "hash": key, "parameters": dict(parameters)}
        if path.exists():
            old = self.read_parameters()
            if canonical(old) != canonical(json.loads(canonical(dict(parameters)))):
                raise ParameterError(f"{self.directory} holds a run with other parameters; choose another --out folder")
            return
        write_atomic(path, json.dumps(body, indent=2, sort_keys=True).encode())

    def read_parameters(self) -> dict[str, Any]:
        """The parameters of the run (``run.json``)."""
        path = self.directory / "run.json"
        try:
            body = json.loads(path.read_text())
            return dict(body["parameters"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"{self.directory} is not a diffpid run folder (no readable run.json)") from err

    def write_items(self, ids: list[str], names: list[str | None]) -> None:
        """Write ``items.jsonl``: the item order of the latest invocation."""
        lines = [json.dumps({"id": i, "name": n}, ensure_ascii=False) for i, n in zip(ids, names)]
        write_atomic(self.directory / "items.jsonl", ("\n".join(lines) + "\n").encode())

    def read_items(self) -> list[tuple[str, str | None]]:
        """``(id, name)`` of every item of the latest invocation, in item order."""
        path = self.directory / "items.jsonl"
        try:
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            return [(r["id"], r.get("name")) for r in rows]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"{self.directory} has no readable items.jsonl; run the items again") from err

    def lock(self) -> Any:
        """Hold an exclusive lock on the run folder for as long as the returned handle lives.

        Raises:
            ParameterError: another process holds it (two invocations on one run folder).
        """
        handle = open(self.directory / "lock", "a+")
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one invocation per folder is on the user
            return handle
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.close()
            raise ParameterError(f"another process is running {self.directory}; wait for it or stop it first") from err
        return handle
