"""What the dry run keeps for the import: the file's validated positions, batch by batch, in a file next to the
upload, so that confirming does not read, parse and validate the whole file a second time.

The spill is written while the dry run reads (one record per batch, so memory does not grow with the file) under a
temporary name, and renamed once the dry run is over: a half-written spill is never read. Its header carries a
fingerprint of everything validation depended on (the file's hash, the mapping, the day, the services' IBAN and
taxonomy, the creditor, the officer's scope); the import uses the spill only when its own fingerprint is the same,
and otherwise reads the file again. It is written by Pay Box alone, removed once the import is over or cancelled,
and read with an unpickler that builds nothing but the ledger's input dataclasses, dates and plain containers.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from portal.ledger import inputs
from portal.ledger.inputs import PositionInput

#: Changes whenever the records change shape: an older spill is then ignored (the file is read again).
VERSION = 1
SUFFIX = ".checked"


@dataclass(frozen=True, slots=True)
class Spilled:
    """One valid position of the file, as the dry run validated it."""

    key: str
    first_row: int
    rows: list[int]
    service_code: str
    data: PositionInput


#: The only classes a spill may contain (anything else is refused: the spill is then ignored).
_ALLOWED = {("datetime", "date"), *(("portal.ledger.inputs", name) for name in (
    "PositionInput", "DebtorInput", "OptionInput", "TransferInput"))}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a spill")
        if module == "datetime":
            import datetime

            return datetime.date
        return getattr(inputs, name)


def _load(source: BinaryIO):
    return _Unpickler(source).load()  # noqa: S301 - restricted to the classes above, and written by us


def path_for(upload: Path) -> Path:
    """Where the spill of a stored upload lives."""
    return upload.with_name(upload.name + SUFFIX)


class Writer:
    """Write a spill: the header, then one :meth:`add` per batch, then :meth:`commit` (or :meth:`discard`)."""

    def __init__(self, upload: Path, fingerprint: dict, header_of: dict[str, str]):
        self.final = path_for(upload)
        self.temporary = self.final.with_name(self.final.name + ".tmp")
        self.out: BinaryIO | None = open(self.temporary, "wb")  # noqa: SIM115 - closed by commit/discard
        self.count = 0
        self._dump({"version": VERSION, "fingerprint": fingerprint, "header_of": dict(header_of)})

    def _dump(self, record) -> None:
        pickle.dump(record, self.out, protocol=pickle.HIGHEST_PROTOCOL)

    def add(self, batch: list[Spilled]) -> None:
        if batch and self.out is not None:
            self._dump([(s.key, s.first_row, s.rows, s.service_code, s.data) for s in batch])
            self.count += len(batch)

    def commit(self) -> None:
        """Close the spill and publish it under its final name (only a complete spill has that name)."""
        if self.out is None:
            return
        self._dump({"end": True, "count": self.count})
        self.out.close()
        self.out = None
        os.replace(self.temporary, self.final)

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        self.temporary.unlink(missing_ok=True)


@dataclass
class Reader:
    """A published spill whose fingerprint matched."""

    path: Path
    header_of: dict[str, str]

    def batches(self) -> Iterator[list[Spilled]]:
        """The batches of valid positions, in the file's order."""
        with open(self.path, "rb") as source:
            _load(source)  # the header, checked by open_matching
            while True:
                record = _load(source)
                if isinstance(record, dict):
                    return
                yield [Spilled(*entry) for entry in record]


def open_matching(upload: Path, fingerprint: dict) -> Reader | None:
    """The spill of ``upload`` if there is one made under the same ``fingerprint``; else ``None``."""
    path = path_for(upload)
    try:
        with open(path, "rb") as source:
            header = _load(source)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("version") != VERSION or header.get("fingerprint") != fingerprint:
        return None
    return Reader(path=path, header_of=dict(header.get("header_of") or {}))


def discard(upload: Path) -> None:
    """Remove the spill of ``upload`` (and a half-written one)."""
    final = path_for(upload)
    final.unlink(missing_ok=True)
    final.with_name(final.name + ".tmp").unlink(missing_ok=True)
