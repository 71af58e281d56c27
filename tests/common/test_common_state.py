"""The shared JSON state file: missing means empty, writes are atomic and leave no temporary file behind."""

import json
import os
import stat

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.common.state import read_state, write_state


def test_missing_file_reads_as_empty(tmp_path):
    assert read_state(str(tmp_path / "none.json")) == {}


def test_write_then_read_round_trips_sorted_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "state.json"
    write_state(str(path), {"job_name": "j", "request_id": "r"})
    write_state(str(path), {"request_id": "r", "job_name": "j2"})
    assert read_state(str(path)) == {"job_name": "j2", "request_id": "r"}
    assert path.read_text() == json.dumps({"job_name": "j2", "request_id": "r"}, indent=2, sort_keys=True)
    assert os.listdir(path.parent) == ["state.json"]


@pytest.mark.parametrize(("text", "message"), [("{not json", "not valid JSON"), ("[1, 2]", "not a JSON object")])
def test_a_broken_file_is_a_user_error_naming_it(tmp_path, text, message):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as caught:
        read_state(str(path), what="tuning state file")
    assert caught.value.path == str(path)
    assert "tuning state file" in caught.value.message


@pytest.fixture
def umask():
    """Sets the process's umask for one test and restores it afterwards."""
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    path = tmp_path / "state.json"
    write_state(str(path), {"a": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == expected


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    path = tmp_path / "state.json"
    write_state(str(path), {"a": 1})
    os.chmod(path, 0o640)
    umask(0o002)
    write_state(str(path), {"a": 2})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert read_state(str(path)) == {"a": 2}
    assert os.listdir(tmp_path) == ["state.json"]
