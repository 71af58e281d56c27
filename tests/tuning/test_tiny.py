"""The demo's tiny model: a kill while it is written leaves nothing half-written that later runs trust."""

import os
import stat

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.tuning import tiny
from tunekit.pipelines.local_run import resolve_base_model

SIZE = {"d_model": 16, "d_kv": 4, "num_heads": 2, "d_ff": 16, "num_layers": 1, "num_decoder_layers": 1}


class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""


def kill_halfway(monkeypatch):
    """Makes the model's save_pretrained write a 0-byte config.json (as a kill mid-write leaves), then die."""
    from transformers import T5ForConditionalGeneration

    def save_halfway(self, folder, *args, **kwargs):
        open(os.path.join(folder, "config.json"), "w").close()
        raise Killed

    monkeypatch.setattr(T5ForConditionalGeneration, "save_pretrained", save_halfway)


def test_a_kill_while_saving_leaves_no_model_folder_and_the_next_call_builds_it(tmp_path, monkeypatch):
    target = tmp_path / "models" / "tiny-t5"
    with monkeypatch.context() as patch:
        kill_halfway(patch)
        with pytest.raises(Killed):
            tiny.make_tiny_model(str(target), **SIZE)
    assert not target.exists()
    assert os.listdir(target.parent) == []  # the half-written folder beside it is gone too
    tiny.ensure_tiny_model(str(target))
    assert tiny.is_complete_model(str(target))
    assert sorted(os.listdir(target.parent)) == ["tiny-t5"]


def test_a_half_written_folder_from_an_older_version_is_rebuilt(tmp_path, monkeypatch):
    # What the older in-place writer left after a kill: a 0-byte config.json and nothing else.
    target = tmp_path / "models" / "tiny-t5"
    target.mkdir(parents=True)
    (target / "config.json").write_text("")
    assert not tiny.is_complete_model(str(target))
    built = []
    real = tiny.make_tiny_model
    monkeypatch.setattr(tiny, "make_tiny_model", lambda path, kind: built.append(path) or real(path, kind, **SIZE))
    assert resolve_base_model("tiny-random:t5", str(tmp_path)) == str(target)
    assert built == [str(target)] and tiny.is_complete_model(str(target))
    # A complete folder is kept as it is: the next run does not rebuild it.
    assert resolve_base_model("tiny-random:t5", str(tmp_path)) == str(target)
    assert built == [str(target)]


def test_truncated_weights_are_not_a_complete_model(tmp_path):
    path = tiny.make_tiny_model(str(tmp_path / "m"), **SIZE)
    weights = os.path.join(path, "model.safetensors")
    os.truncate(weights, os.path.getsize(weights) // 2)
    assert not tiny.is_complete_model(path)


def test_the_folder_follows_the_umask_and_other_files_are_never_replaced(tmp_path):
    old = os.umask(0o002)
    try:
        path = tiny.make_tiny_model(str(tmp_path / "m"), **SIZE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o775
    assert stat.S_IMODE(os.stat(os.path.join(path, "config.json")).st_mode) == 0o664
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match="not a model's"):
        tiny.make_tiny_model(str(tmp_path / "notes"), **SIZE)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
