"""artifacts.call in a KFP step: a user error is one line and exit 2, recorded so a retried attempt stops at once."""

from __future__ import annotations

import json
import os

import pytest

from tunekit.components.common import artifacts
from tunekit.components.common.errors import UserError


class _Artifact:
    """Like a kfp.dsl artifact: a uri, a local path and metadata."""

    def __init__(self, path: str):
        self.uri = "gs://bucket/root/run/task/" + os.path.basename(path)
        self.path = path
        self.metadata: dict = {}


@pytest.fixture
def in_step(monkeypatch, tmp_path):
    monkeypatch.setattr(artifacts, "in_step", lambda: True)
    monkeypatch.delenv(artifacts.DEBUG_ENV, raising=False)
    # The KFP executor's command line: its executor input names the step's output artifacts.
    executor_input = {"inputs": {"artifacts": {"data": {}}}, "outputs": {"artifacts": {"out": {}}}}
    monkeypatch.setattr("sys.argv", ["executor_main", "--executor_input", json.dumps(executor_input)])


def _wrapper(calls: list, out, task: str, data=None):
    def step(task: str, path: str) -> str:
        calls.append(task)
        if task not in ("classification", "generic"):
            raise UserError(f"unknown task '{task}'", field="task")
        return task

    # Signature order: the input artifact comes first.
    values = {"data": data or _Artifact(os.path.join(os.path.dirname(os.path.dirname(out.path)), "up", "d"))}
    return artifacts.call(step, {**values, "task": task, "out": out}, path=out.path)


def test_a_user_error_is_one_line_exit_2_and_a_retried_attempt_does_no_work(in_step, tmp_path, capsys):
    out = _Artifact(str(tmp_path / "task" / "model"))
    calls: list = []
    with pytest.raises(SystemExit) as first:
        _wrapper(calls, out, "clasification")
    assert first.value.code == artifacts.EXIT_USER_ERROR
    assert capsys.readouterr().err == artifacts.USER_ERROR_PREFIX + "field 'task': unknown task 'clasification'\n"
    record = json.loads((tmp_path / "task" / artifacts.RECORD_NAME).read_text())
    assert not (tmp_path / "up" / artifacts.RECORD_NAME).exists()  # not beside the input (another step's)
    assert record["message"] == "field 'task': unknown task 'clasification'"
    # Vertex retries the task with the same output URIs: the attempt stops before the step runs.
    with pytest.raises(SystemExit) as second:
        _wrapper(calls, out, "clasification")
    assert second.value.code == 2 and calls == ["clasification"]
    assert "recorded by an earlier attempt" in capsys.readouterr().err
    # Other inputs (not a retry of the same attempt) run.
    assert _wrapper(calls, out, "classification") == "classification" and calls[-1] == "classification"


def test_debug_keeps_the_traceback_and_other_errors_are_left_alone(in_step, tmp_path, monkeypatch):
    out = _Artifact(str(tmp_path / "task" / "model"))
    monkeypatch.setenv(artifacts.DEBUG_ENV, "1")
    with pytest.raises(UserError):
        _wrapper([], out, "bad")

    def crash(path: str) -> None:
        raise RuntimeError("transient")

    with pytest.raises(RuntimeError):  # retried by KFP: not stopped, not recorded
        artifacts.call(crash, {"out": out}, path=out.path)


def test_outside_a_step_and_nested_calls_raise_as_before(tmp_path, monkeypatch):
    out = _Artifact(str(tmp_path / "model"))
    with pytest.raises(UserError):  # not a KFP step (this test process)
        _wrapper([], out, "bad")
    monkeypatch.setattr(artifacts, "in_step", lambda: True)

    def outer(path: str) -> str:
        try:
            artifacts.call(lambda task: (_ for _ in ()).throw(UserError("inner")), {"task": "x"})
        except UserError as exc:  # logic that handles a nested call's error keeps doing so
            return f"handled {exc}"
        return "no error"

    assert artifacts.call(outer, {"out": out}, path=out.path) == "handled inner"
    assert not os.path.exists(tmp_path / artifacts.RECORD_NAME)
