"""Blobs written from a stream are the blobs git writes, small ones without a file when
already stored, and a stream that is not the size it announced is refused."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from conftest import fsck

from gdag.errors import StoreError
from gdag.objects import CHUNK
from gdag.repo import Store


def git_hash(store: Store, data: bytes) -> bytes:
    out = subprocess.run(
        ["git", "hash-object", "--stdin"], input=data, cwd=store.workdir, capture_output=True
    )
    return out.stdout.strip()


def files_under(path: Path) -> set[str]:
    return {os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs}


@pytest.mark.parametrize("size", [0, 300, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_a_streamed_blob_is_the_blob_git_writes(store: Store, size: int) -> None:
    data = os.urandom(size)
    sha = store.write_blob_stream(io.BytesIO(data), size)
    assert sha == git_hash(store, data)
    assert store.read_blob(sha) == data
    fsck(store.workdir)


@pytest.mark.parametrize("size", [300, CHUNK + 1])
def test_a_stored_value_again_leaves_no_file(store: Store, size: int) -> None:
    """Writing a value already stored adds nothing under objects/ (for one of a chunk
    or less, not even a temporary file for a moment: it is hashed before it is written)."""
    data = os.urandom(size)
    sha = store.write_blob_stream(io.BytesIO(data), size)
    objects = Path(store.objects.path)
    before = files_under(objects)
    os.utime(objects, ns=(0, 0))  # any entry made or removed there sets it to now
    assert store.write_blob_stream(io.BytesIO(data), size) == sha
    assert files_under(objects) == before
    if size <= CHUNK:
        assert objects.stat().st_mtime_ns == 0


@pytest.mark.parametrize("size", [300, CHUNK + 1])
def test_a_stream_of_another_size_is_refused(store: Store, size: int) -> None:
    objects = Path(store.objects.path)
    before = files_under(objects)
    data = os.urandom(size)
    with pytest.raises(StoreError, match="ended before its announced size"):
        store.write_blob_stream(io.BytesIO(data[:-1]), size)
    with pytest.raises(StoreError, match="changed size while it was being read"):
        store.write_blob_stream(io.BytesIO(data + b"x"), size)
    assert files_under(objects) == before  # no object, no temporary file left
