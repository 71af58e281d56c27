"""The deploy step's merged serving model is written whole: a kill mid-save is not trusted on the retry."""

import os

import pytest

from tunekit.components.common import state, uris
from tunekit.components.deployment.steps import SERVING_DIR, merged_serving_dir
from tunekit.components.tuning.tiny import is_complete_model, make_tiny_model

SIZE = {"d_model": 16, "d_kv": 4, "num_heads": 2, "d_ff": 16, "num_layers": 1, "num_decoder_layers": 1}


class Killed(BaseException):
    """Stands for the process being killed."""


@pytest.fixture
def adapter(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import T5ForConditionalGeneration

    base = make_tiny_model(str(tmp_path / "base"), **SIZE)
    model = get_peft_model(
        T5ForConditionalGeneration.from_pretrained(base), LoraConfig(r=2, target_modules=["q", "v"])
    )
    model.save_pretrained(str(tmp_path / "adapter"))
    return str(tmp_path / "adapter")


def test_a_kill_while_merging_leaves_nothing_the_retry_trusts(adapter, tmp_path, monkeypatch):
    from transformers import T5ForConditionalGeneration

    out = tmp_path / "deploy"
    real = T5ForConditionalGeneration.save_pretrained

    def save_halfway(self, folder, *args, **kwargs):
        open(os.path.join(folder, "config.json"), "w").close()
        raise Killed

    monkeypatch.setattr(T5ForConditionalGeneration, "save_pretrained", save_halfway)
    with pytest.raises(Killed):
        merged_serving_dir(adapter, str(out))
    assert not (out / SERVING_DIR).exists() and os.listdir(out) == []
    monkeypatch.setattr(T5ForConditionalGeneration, "save_pretrained", real)
    target = merged_serving_dir(adapter, str(out))
    assert target == str(out / SERVING_DIR) and is_complete_model(target)


def test_under_the_gcs_mount_the_folder_is_written_in_place(tmp_path, monkeypatch):
    # gcsfuse renames folders only below --rename-dir-limit (0 by default): no rename there.
    monkeypatch.setattr(uris, "GCS_FUSE_ROOT", str(tmp_path / "gcs"))
    target = tmp_path / "gcs" / "bucket" / "out" / "model"
    with state.replace_directory(str(target)) as folder:
        assert folder == str(target)
        (target / "config.json").write_text("{}")
    assert os.listdir(target.parent) == ["model"]
