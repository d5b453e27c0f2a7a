"""The programs and services the test suite uses beyond Python packages, checked in one place.

``make test`` runs this module first (``python -m tests.prerequisites``): it stops at once when PostgreSQL or Redis
cannot be reached (nothing would run), and names the one ``apt-get`` command that installs the missing programs.
Tests that need a missing program skip through :func:`require`, saying what to install; with
``PAYBOX_REQUIRE_BROWSER=1`` (CI) a missing program is a failure instead.
"""

import os
import shutil
import sys

#: Program → the Debian package that provides it.
PROGRAMS = {
    "pdftoppm": "poppler-utils",  # notices are rasterised to decode their barcodes
    "pdftotext": "poppler-utils",  # text positions on the notice
    "pdfinfo": "poppler-utils",  # page counts of bill-run PDFs
    "chromium": "chromium",  # browser tests (Playwright drives Debian's chromium, never a downloaded one)
}
CHROMIUM = os.environ.get("PAYBOX_CHROMIUM", "/usr/bin/chromium")
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/paybox_test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


def strict() -> bool:
    """Whether a missing program fails the run (CI) rather than skipping its tests."""
    return os.environ.get("PAYBOX_REQUIRE_BROWSER") == "1"


def found(program: str) -> str | None:
    """The path of ``program``, or ``None``."""
    if program == "chromium":
        return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which(CHROMIUM)
    return shutil.which(program)


def install_command(programs) -> str:
    """The one apt command that installs ``programs``."""
    packages = sorted({PROGRAMS[p] for p in programs})
    return f"sudo apt-get install -y {' '.join(packages)}"


def require(*programs: str) -> None:
    """Skip the calling test (fail it under CI) when one of ``programs`` is missing, saying what to install."""
    import pytest

    missing = [p for p in programs if not found(p)]
    if not missing:
        return
    message = f"needs {', '.join(missing)}: {install_command(missing)}"
    if strict():
        pytest.fail(message)
    pytest.skip(message)


def _check_services() -> list[str]:
    import psycopg
    import redis

    problems = []
    url = os.environ.get("TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    server = url.rsplit("/", 1)[0] + "/postgres"
    try:
        psycopg.connect(server, connect_timeout=3).close()
    except psycopg.Error as exc:
        problems.append(f"PostgreSQL is not reachable at {server} ({str(exc).strip().splitlines()[0]}).\n"
                        "    Install and start it: sudo apt-get install -y postgresql"
                        " && sudo service postgresql start\n"
                        "    (the tests connect as user postgres without a password; set TEST_DATABASE_URL otherwise)")
    redis_url = os.environ.get("TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        problems.append(f"Redis is not reachable at {redis_url} ({exc}).\n"
                        "    Install and start it: sudo apt-get install -y redis-server"
                        " && sudo service redis-server start")
    return problems


def main() -> int:
    problems = _check_services()
    missing = [p for p in PROGRAMS if not found(p)]
    if missing:
        what = ("are required here (PAYBOX_REQUIRE_BROWSER=1)" if strict()
                else "are missing: their tests will be skipped")
        print(f"make test: {', '.join(missing)} {what}.\n    Install them with: {install_command(missing)}",
              file=sys.stderr)
        if strict():
            problems.append("missing programs")
    for problem in problems:
        print(f"make test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
