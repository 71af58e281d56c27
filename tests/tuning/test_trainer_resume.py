"""Resume: a training step killed halfway and run again finishes the same run from its last complete checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tunekit.components.common.state import read_state, write_state
from tunekit.components.tuning import trainers
from tunekit.components.tuning.lora import TRAINING_LOG, LocalTuningConfig
from tunekit.components.tuning.tiny import make_tiny_model

pytest.importorskip("torch")
pytest.importorskip("trl")

SIZE = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
LABELS = ["billing", "technical", "shipping", "account"]
MESSAGES = ["card charged twice", "app crashes", "parcel is late", "reset password", "refund please", "error 500"]
STEPS, SAVE_EVERY, KILL_AFTER = 40, 5, 10
#: Resuming restores the optimizer, the schedule, the RNG states and the data order: the losses after the
#: resume point are those of the uninterrupted run up to float summation order.
LOSS_TOLERANCE = 1e-4

CHILD = """
import json, sys
from tunekit.components.tuning.lora import LocalTuningConfig
from tunekit.components.tuning.supervised.local import tune_local
base, train, out, config = sys.argv[1:]
tune_local(base, train, None, out, LocalTuningConfig(**json.loads(config)))
"""


def _config(**overrides):
    values = dict(
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        learning_rate=1e-2,
        warmup_ratio=0.1,
        max_steps=STEPS,
        batch_size=4,
        max_input_length=64,
        max_target_length=16,
        logging_steps=1,
        save_steps=SAVE_EVERY,
        save_total_limit=3,
        device="cpu",
    )
    values.update(overrides)
    return values


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: the CPU is shared, and two runs' threads fighting for it make both crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    train = root / "train.jsonl"
    rows = [{"prompt": f"Route: {MESSAGES[i % 6]}\nTeam:", "completion": LABELS[i % 4]} for i in range(24)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return make_tiny_model(str(root / "base"), "causal", **SIZE), str(train), root


def _losses(out):
    with open(os.path.join(out, TRAINING_LOG)) as handle:
        log = json.load(handle)
    return [(e["step"], e["loss"]) for e in log["log"]], log["summary"]


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(setup):
    from tunekit.components.tuning.supervised.local import tune_local

    base, train, root = setup
    out = str(root / "killed")
    folder = trainers.checkpoint_folder(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEKIT_PROGRESS": "off"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, base, train, out, json.dumps(_config())],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 600

    def saved_step():
        found = trainers.last_complete_checkpoint(folder)
        return int(found.rsplit("-", 1)[1]) if found else 0

    try:
        while saved_step() < KILL_AFTER:
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, TRAINING_LOG)), "the run finished before it was killed"
    killed_at = trainers.last_complete_checkpoint(folder)
    # What a kill in the middle of a save leaves: a checkpoint folder without its completeness mark.
    half = os.path.join(folder, f"checkpoint-{STEPS - SAVE_EVERY}")
    os.makedirs(half, exist_ok=True)
    with open(os.path.join(half, "adapter_model.safetensors"), "wb") as handle:
        handle.write(b"\0" * 10)

    summary = tune_local(base, train, None, out, LocalTuningConfig(**_config()))
    assert summary["resumed_from"] == int(killed_at.rsplit("-", 1)[1]) >= KILL_AFTER
    assert summary["steps"] == STEPS
    resumed, _ = _losses(out)
    assert [s for s, _ in resumed] == list(range(1, STEPS + 1))  # every optimizer step once, none twice
    assert not os.path.exists(folder)  # the checkpoints are gone once the model is written

    straight = str(root / "straight")
    whole = tune_local(base, train, None, straight, LocalTuningConfig(**_config()))
    uninterrupted, _ = _losses(straight)
    assert whole["resumed_from"] == 0 and whole["steps"] == STEPS
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in uninterrupted], rel=LOSS_TOLERANCE)
    assert summary["train_loss"] == pytest.approx(whole["train_loss"], rel=LOSS_TOLERANCE)


def _checkpoint(folder, step, complete=True):
    path = os.path.join(folder, f"checkpoint-{step}")
    os.makedirs(path)
    write_state(os.path.join(path, "trainer_state.json"), {"global_step": step})
    if complete:
        write_state(os.path.join(path, trainers.COMPLETE), {"step": step})
    return path


class _Args:
    """What resume_point reads of TrainingArguments (one process)."""

    process_index = 0

    def __init__(self, output_dir):
        self.output_dir = output_dir

    def main_process_first(self, **_):
        import contextlib

        return contextlib.nullcontext()


def test_resume_point_skips_half_written_checkpoints_and_those_of_another_run(tmp_path):
    folder = str(tmp_path / "checkpoints")
    args = _Args(folder)
    assert trainers.resume_point(args, "run-a") is None
    _checkpoint(folder, 10)
    _checkpoint(folder, 20)
    _checkpoint(folder, 30, complete=False)
    wrong = _checkpoint(folder, 25, complete=False)
    write_state(os.path.join(wrong, trainers.COMPLETE), {"step": 24})  # a mark copied from another folder
    assert trainers.resume_point(args, "run-a") == os.path.join(folder, "checkpoint-20")
    assert sorted(os.listdir(folder)) == ["checkpoint-10", "checkpoint-20", trainers.RUN_FILE]
    # Other settings or data: nothing of the old run is resumed, nor kept.
    assert trainers.resume_point(args, "run-b") is None
    assert os.listdir(folder) == [trainers.RUN_FILE]
    assert read_state(os.path.join(folder, trainers.RUN_FILE)) == {"run": "run-b"}


def test_the_fingerprint_follows_training_settings_and_data_not_logging(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    config = LocalTuningConfig(**_config())
    first = trainers.fingerprint("supervised", config, "base", str(data))
    assert first == trainers.fingerprint(
        "supervised", LocalTuningConfig(**_config(logging_steps=7)), "base", str(data)
    )
    assert first != trainers.fingerprint(
        "supervised", LocalTuningConfig(**_config(learning_rate=1)), "base", str(data)
    )
    data.write_text('{"prompt": "a", "completion": "c"}\n')
    assert first != trainers.fingerprint("supervised", config, "base", str(data))
