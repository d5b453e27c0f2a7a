"""The constant-memory ZIP writer of bill-run packages: what it writes, zipfile (and unzip) read back."""

import io
import shutil
import subprocess
import zipfile
import zlib

import pytest

from portal.notices import zipwriter
from portal.notices.zipwriter import StoredZipWriter


def check_with_unzip(path) -> None:
    """``unzip -t`` where installed: another reader than Python's."""
    if shutil.which("unzip"):
        result = subprocess.run([shutil.which("unzip"), "-tq", str(path)], capture_output=True, text=True)  # noqa: S603
        assert result.returncode == 0, result.stdout + result.stderr


def test_members_from_bytes_files_and_streams(tmp_path):
    source = tmp_path / "source.pdf"
    source.write_bytes(b"%PDF-1.3 " + bytes(range(256)) * 40)
    path = tmp_path / "package.zip"
    with StoredZipWriter(path) as package:
        package.write_bytes("LEGGIMI.txt", "Città e perché".encode())
        package.write_files("avvisi/avvisi-00001.pdf", [source])
        data = b"x" * 5000
        package.write_stream("senza_indirizzo/RSSMRA80A01H501U_01000000000000144.pdf", io.BytesIO(data),
                             size=len(data), crc=zlib.crc32(data))
        part = tmp_path / "part.csv"
        part.write_bytes(b"1;2\n")
        package.write_files("indice.csv", [part, part], head=b"a;b\n")
        assert package.count == 4
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert z.namelist() == ["LEGGIMI.txt", "avvisi/avvisi-00001.pdf",
                                "senza_indirizzo/RSSMRA80A01H501U_01000000000000144.pdf", "indice.csv"]
        assert z.read("indice.csv") == b"a;b\n1;2\n1;2\n"
        assert z.read("LEGGIMI.txt").decode() == "Città e perché"
        assert z.read("avvisi/avvisi-00001.pdf") == source.read_bytes()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        assert z.getinfo("LEGGIMI.txt").date_time[0] >= 2026
    check_with_unzip(path)


def test_zip64_records_for_counts_sizes_and_offsets(tmp_path, monkeypatch):
    # 4 GiB cannot be written in a test: lower the thresholds so every ZIP64 record is used on a small archive.
    monkeypatch.setattr(zipwriter, "ZIP64_BYTES", 1000)
    monkeypatch.setattr(zipwriter, "ZIP64_COUNT", 10)
    path = tmp_path / "big.zip"
    contents = {f"avvisi/{n:05d}.pdf": bytes([n % 256]) * (300 + 200 * n) for n in range(12)}
    with StoredZipWriter(path) as package:
        for name, data in contents.items():
            package.write_bytes(name, data)
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None
        assert {name: z.read(name) for name in z.namelist()} == contents
        big = z.getinfo("avvisi/00011.pdf")
        assert big.file_size == 2500
        assert big.header_offset > 1000
    check_with_unzip(path)


def test_more_than_65535_members(tmp_path):
    path = tmp_path / "many.zip"
    with StoredZipWriter(path) as package:
        for n in range(70_000):
            package.write_bytes(f"{n}.txt", b"%d" % n)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert len(names) == 70_000
        assert z.read("69999.txt") == b"69999"


def test_a_short_source_is_an_error_and_an_aborted_package_has_no_directory(tmp_path):
    path = tmp_path / "broken.zip"
    with pytest.raises(ValueError, match="bytes instead of"), StoredZipWriter(path) as package:
        package.write_stream("a.pdf", io.BytesIO(b"abc"), size=10, crc=0)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(path)
