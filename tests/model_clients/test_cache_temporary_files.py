"""Temporary files and folders of the response cache, batch staging and piped validation input are removed,
and the cache's files follow the user's umask."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest
from fake_vertex import FakeVertex, loopback_only

from tunekit.components.common import uris
from tunekit.components.data_validation.reader import readable_copy
from tunekit.components.model_clients import batch
from tunekit.components.model_clients.base import Generation, GenerationConfig, Prompt
from tunekit.components.model_clients.cache import ResponseCache, cache_key


@pytest.fixture
def loopback(monkeypatch):
    yield from loopback_only(monkeypatch)


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder, for this test only: what is left in it is what the code under test left."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_gcs_cache_without_the_mount_removes_its_local_mirror_at_close(
    loopback, tmp_path, private_tmp, monkeypatch
):
    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "no-gcs-mount"))  # as off Vertex: no /gcs
    with FakeVertex(gcs_root=str(tmp_path / "gcs")) as fake:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.url)
        uri = "gs://bucket/run/cache"
        key = cache_key("fake", "m", GenerationConfig(), Prompt("a"))
        cache = ResponseCache(uri)
        assert cache.directory.startswith(str(private_tmp))
        cache.put(key, Generation(text="A"))
        cache.close()
        assert os.listdir(private_tmp) == []
        # Still usable after close: the answer is in memory and a later put goes to a new uploaded segment.
        assert cache.get(key).text == "A"
        cache.put(cache_key("fake", "m", GenerationConfig(), Prompt("b")), Generation(text="B"))
        cache.close()
        assert os.listdir(private_tmp) == []
        assert ResponseCache(uri).loaded == 2


def test_cache_segments_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        with ResponseCache(str(tmp_path / "cache")) as cache:
            cache.put("k", Generation(text="x"))
            segment = cache._segment_path
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(segment).st_mode) == 0o664


def test_batch_staging_file_is_removed_when_the_write_fails(private_tmp, monkeypatch):
    uploaded = []
    monkeypatch.setattr(batch.uris, "upload", lambda path, uri: uploaded.append(open(path).read()))
    batch.GcsIO().write_text("gs://b/input.jsonl", '{"a": 1}\n')
    assert uploaded == ['{"a": 1}\n'] and os.listdir(private_tmp) == []
    with pytest.raises(UnicodeEncodeError):  # a lone surrogate cannot be written as UTF-8
        batch.GcsIO().write_text("gs://b/input.jsonl", '{"a": "\ud83d"}\n')
    assert os.listdir(private_tmp) == []


def test_piped_validation_input_copy_is_removed_even_when_the_copy_is_interrupted(private_tmp, monkeypatch):
    read, write = os.pipe()
    os.write(write, b'{"a": 1}\n')
    os.close(write)
    with readable_copy(f"/dev/fd/{read}") as copy:
        assert open(copy, "rb").read() == b'{"a": 1}\n'
    assert os.listdir(private_tmp) == []
    read, write = os.pipe()
    os.write(write, b"x" * 10)
    os.close(write)

    def interrupted(source, target, length=0):
        target.write(source.read(4))
        raise KeyboardInterrupt

    monkeypatch.setattr("tunekit.components.data_validation.reader.shutil.copyfileobj", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with readable_copy(f"/dev/fd/{read}"):
            pass
    assert os.listdir(private_tmp) == []
