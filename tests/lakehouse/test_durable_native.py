"""The one-call C durable write (``native/durable_write.c``): bytes, create-only, errors, syscall order."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sirius.lakehouse import _durable_write
from sirius.lakehouse._durable_native import ffi, lib
from sirius.lakehouse._durable_write import DirectorySync, fsync_directory, write_new_file

pytestmark = pytest.mark.skipif(not _durable_write._Tmpfile.supported, reason="O_TMPFILE is not available here")


def _create(path: Path, head: bytes, data: bytes | memoryview, durable: bool = True) -> int:
    return int(
        lib.sirius_durable_create(
            os.fsencode(path.parent), os.fsencode(path), head, len(head), ffi.from_buffer(data), len(data), durable
        )
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(head=st.binary(max_size=64), data=st.binary(max_size=4096), durable=st.booleans())
def test_file_holds_head_then_data(tmp_path: Path, head: bytes, data: bytes, durable: bool) -> None:
    directory = tmp_path / os.urandom(6).hex()
    directory.mkdir()
    path = directory / "obj"
    assert _create(path, head, data, durable) == 1
    assert path.read_bytes() == head + data
    assert _create(path, b"other", b"bytes", durable) == 0  # create-only: the first stays
    assert path.read_bytes() == head + data
    assert os.listdir(directory) == ["obj"]
    shutil.rmtree(directory)


def test_large_memoryview_slice_is_written_whole(tmp_path: Path) -> None:
    """A slice of a larger buffer (the OTLP receivers pass views of the request), several MiB."""
    backing = os.urandom(9 << 20)
    view = memoryview(backing)[12345 : 12345 + (8 << 20)]
    assert write_new_file(tmp_path / "big", view, durable=True, syncer=DirectorySync())
    assert (tmp_path / "big").read_bytes() == bytes(view)


@pytest.mark.parametrize(("parent_is", "error"), [("missing", FileNotFoundError), ("a file", NotADirectoryError)])
def test_errors_are_the_matching_oserror(tmp_path: Path, parent_is: str, error: type[OSError]) -> None:
    parent = tmp_path / "parent"
    if parent_is == "a file":
        parent.write_bytes(b"")
    with pytest.raises(error) as raised:
        write_new_file(parent / "obj", b"x", durable=True, syncer=None)
    assert str(parent / "obj") in str(raised.value)
    with pytest.raises(error):
        fsync_directory(parent)


def test_no_tmpfile_is_reported_and_the_named_fallback_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filesystem that refuses O_TMPFILE (procfs does) gets the marker, and the store then writes named files."""
    assert _create(Path("/proc/sirius-never-created"), b"", b"x") == lib.SIRIUS_DURABLE_NO_TMPFILE

    class Refusing:
        SIRIUS_DURABLE_NO_TMPFILE = lib.SIRIUS_DURABLE_NO_TMPFILE

        def __getattr__(self, name: str) -> object:
            return getattr(lib, name)

        def sirius_durable_create(self, *_: object) -> int:
            return lib.SIRIUS_DURABLE_NO_TMPFILE

    monkeypatch.setattr(_durable_write, "lib", Refusing())
    monkeypatch.setattr(_durable_write._Tmpfile, "supported", True)
    assert write_new_file(tmp_path / "obj", b"payload", durable=True, syncer=DirectorySync())
    assert _durable_write._Tmpfile.supported is False  # learnt once, for every later write
    assert (tmp_path / "obj").read_bytes() == b"payload"
    assert os.listdir(tmp_path) == ["obj"]


_TRACED = """
import sys
from pathlib import Path
from sirius.lakehouse._durable_write import DirectorySync, write_new_file
print("BEGIN", flush=True)
write_new_file(Path(sys.argv[1]) / "obj", b"z" * 70_000, durable=True, syncer=DirectorySync())
print("END", flush=True)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_syscall_order_data_synced_before_the_name_and_the_name_before_return(tmp_path: Path) -> None:
    """strace of one write: O_TMPFILE open, the bytes, fsync of the file, linkat, then fsync of the directory."""
    log = tmp_path / "strace.log"
    store = tmp_path / "store"
    store.mkdir()
    run = subprocess.run(
        [
            "strace",
            "-f",
            "-o",
            str(log),
            "-e",
            "trace=openat,write,writev,fsync,linkat",
            sys.executable,
            "-c",
            _TRACED,
            str(store),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()}")
    assert run.returncode == 0, run.stderr
    lines = log.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if 'write(1, "BEGIN' in line)
    lines = lines[begin + 1 :]
    tmpfile = next(i for i, line in enumerate(lines) if "O_TMPFILE" in line)
    fd = re.search(r"= (\d+)$", lines[tmpfile]).group(1)  # type: ignore[union-attr]
    wrote = next(i for i, line in enumerate(lines) if re.search(rf"writev?\({fd},", line))
    synced = next(i for i, line in enumerate(lines) if f"fsync({fd})" in line)
    linked = next(i for i, line in enumerate(lines) if "linkat(" in line and str(store / "obj") in line)
    directory = next(
        i for i, line in enumerate(lines) if "openat(" in line and f'"{store}"' in line and "O_DIRECTORY" in line
    )
    dir_fd = re.search(r"= (\d+)$", lines[directory]).group(1)  # type: ignore[union-attr]
    dir_synced = next(i for i, line in enumerate(lines) if f"fsync({dir_fd})" in line and i > directory)
    end = next(i for i, line in enumerate(lines) if 'write(1, "END' in line)
    assert tmpfile < wrote < synced < linked < directory < dir_synced < end
    assert "= 0" in lines[linked]
    assert (store / "obj").read_bytes() == b"z" * 70_000


def test_errno_codes_are_negative(tmp_path: Path) -> None:
    assert lib.sirius_fsync_directory(os.fsencode(tmp_path / "missing")) == -errno.ENOENT
    assert lib.sirius_fsync_directory(os.fsencode(tmp_path)) == 0
