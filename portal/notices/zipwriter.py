"""A ZIP writer for bill-run packages whose memory does not grow with the number of members.

Python's ``zipfile`` keeps one ``ZipInfo`` per member (about 0.4 KiB) until it writes the central directory at
close: 100,000 envelopes cost 37 MiB, a million 0.4 GiB. This writer spills each member's central-directory record
to a temporary file as it goes and copies it to the end of the archive at close, so a package of any size is
written in constant memory. It writes only what packages need: stored members (PDFs are already compressed) whose
size and CRC are known before the data, ZIP64 when sizes, offsets or the member count need it (APPNOTE 6.3.x), UTF-8
names. ``zipfile`` reads what it writes (tests check both, and ``unzip -t`` where installed).
"""

import io
import os
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")
_END = struct.Struct("<IHHHHIIH")
_END64 = struct.Struct("<IQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<IIQI")
#: "See the ZIP64 record" markers of the 32- and 16-bit fields.
_MAX32 = 0xFFFFFFFF
_MAX16 = 0xFFFF
#: From which size/offset and which member count ZIP64 records are written (lowered by the tests, which cannot
#: write 4 GiB, to exercise those records on small archives).
ZIP64_BYTES = _MAX32
ZIP64_COUNT = _MAX16
#: Version 4.5: ZIP64. Made by Unix (3), so the permissions in the external attributes apply.
_VERSION = 45
_MADE_BY = (3 << 8) | _VERSION
#: General purpose flag bit 11: names are UTF-8.
_UTF8 = 0x0800
_COPY_BUFFER = 1024 * 1024


def _dos_time(timestamp: float) -> tuple[int, int]:
    t = time.localtime(timestamp)
    year = max(t.tm_year, 1980)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


def crc_of(path: Path, crc: int = 0) -> int:
    """CRC-32 of a file (continuing ``crc``), read in blocks."""
    with open(path, "rb") as source:
        while block := source.read(_COPY_BUFFER):
            crc = zlib.crc32(block, crc)
    return crc


class StoredZipWriter:
    """``with StoredZipWriter(path) as z: z.write_stream(name, source, size=..., crc=...)``."""

    def __init__(self, path: Path | str):
        self._out: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self._central = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._count = 0

    def __enter__(self) -> "StoredZipWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(abort=exc_type is not None)

    def write_stream(self, name: str, source: BinaryIO, *, size: int, crc: int, mtime: float | None = None) -> None:
        """Add member ``name`` with ``size`` bytes read from ``source``, whose CRC-32 is ``crc``.

        Names are not checked for repeats (that would keep one entry per member in memory): callers add unique
        names (``<CF>_<IUV>.pdf``, numbered chunk files).

        :raise ValueError: if ``source`` gives another number of bytes.
        """
        self._write(name, [source], size=size, crc=crc, mtime=mtime)

    def _write(self, name: str, sources: Iterable[BinaryIO], *, size: int, crc: int, mtime: float | None) -> None:
        """One member whose ``size`` bytes are read from ``sources`` in turn."""
        encoded = name.encode("utf-8")
        offset = self._out.tell()
        clock, day = _dos_time(time.time() if mtime is None else mtime)
        big = size >= ZIP64_BYTES
        extra = struct.pack("<HHQQ", 1, 16, size, size) if big else b""
        small_size = _MAX32 if big else size
        self._out.write(_LOCAL.pack(0x04034B50, _VERSION, _UTF8, 0, clock, day, crc, small_size, small_size,
                                    len(encoded), len(extra)))
        self._out.write(encoded)
        self._out.write(extra)
        copied = 0
        for source in sources:
            while copied < size and (block := source.read(min(_COPY_BUFFER, size - copied))):
                self._out.write(block)
                copied += len(block)
        if copied != size:
            raise ValueError(f"member {name!r}: {copied} bytes instead of {size}")
        # Central-directory record: ZIP64 fields for what does not fit in 32 bits, in APPNOTE's order.
        fields = [size, size] if big else []
        far = offset >= ZIP64_BYTES
        if far:
            fields.append(offset)
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if fields else b""
        self._central.write(_CENTRAL.pack(0x02014B50, _MADE_BY, _VERSION, _UTF8, 0, clock, day, crc, small_size,
                                          small_size, len(encoded), len(extra), 0, 0, 0, 0o100644 << 16,
                                          _MAX32 if far else offset))
        self._central.write(encoded)
        self._central.write(extra)
        self._count += 1

    def write_bytes(self, name: str, data: bytes) -> None:
        """Add a small member held in memory."""
        self.write_stream(name, io.BytesIO(data), size=len(data), crc=zlib.crc32(data))

    def write_files(self, name: str, paths: Iterable[Path], *, head: bytes = b"") -> None:
        """Add one member made of ``head`` then each file's bytes, in order (a first read computes the CRC).

        Files are opened one at a time, so a member may join any number of them (a CSV header and its parts).
        """
        paths = list(paths)
        crc, size = zlib.crc32(head), len(head)
        for path in paths:
            crc = crc_of(path, crc)
            size += os.path.getsize(path)

        def sources():
            yield io.BytesIO(head)
            for path in paths:
                with open(path, "rb") as source:
                    yield source

        self._write(name, sources(), size=size, crc=crc, mtime=None)

    def close(self, *, abort: bool = False) -> None:
        """Append the central directory and the end records (unless ``abort``), and close the files."""
        try:
            if not abort:
                start = self._out.tell()
                self._central.seek(0)
                shutil.copyfileobj(self._central, self._out, _COPY_BUFFER)
                size = self._out.tell() - start
                zip64 = self._count >= ZIP64_COUNT or start >= ZIP64_BYTES or size >= ZIP64_BYTES
                if zip64:
                    end64 = self._out.tell()
                    self._out.write(_END64.pack(0x06064B50, _END64.size - 12, _MADE_BY, _VERSION, 0, 0,
                                                self._count, self._count, size, start))
                    self._out.write(_LOCATOR64.pack(0x07064B50, 0, end64, 1))
                count = _MAX16 if zip64 else self._count
                self._out.write(_END.pack(0x06054B50, 0, 0, count, count, _MAX32 if zip64 else size,
                                          _MAX32 if zip64 else start, 0))
        finally:
            self._central.close()
            self._out.close()

    @property
    def count(self) -> int:
        return self._count
