"""Distributed: the training steps run under ``torchrun`` with 2 CPU processes (gloo) as they do in one process.

The same global batch (2 processes x 4 examples, against 1 process x 8) and the same seed give the same batches
at every step (accelerate shards each global batch across the processes), and the loss is normalised over the
tokens of every process, so the two loss curves agree to float summation order.
"""

import json
import os
import subprocess
import sys

import pytest

from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.tuning.tiny import make_tiny_model

pytest.importorskip("torch")
pytest.importorskip("trl")

CAUSAL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
SEQ2SEQ = {"d_model": 32, "d_kv": 8, "num_heads": 2, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}
LABELS = ["billing", "technical", "shipping", "account"]
MESSAGES = ["card charged twice", "app crashes", "parcel is late", "reset password", "refund please", "error 500"]
STEPS = 9
#: Relative tolerance between the 1-process and 2-process losses at every step: the gradients are the same sums
#: taken in another order (the all-reduce), so they differ by float rounding only.
TOLERANCE = 1e-3

#: Run by torchrun in each process: rank 1 may not write the model, the tokenizer or the log (rank 0 does).
CHILD = """
import json, os, sys
import torch
torch.set_num_threads(1)
from tunekit.components.tuning import trainers
from tunekit.components.tuning.distillation.local import DistillTuningConfig, tune_student
from tunekit.components.tuning.lora import LocalTuningConfig
from tunekit.components.tuning.supervised.local import tune_local

if os.environ["RANK"] != "0":
    import peft, transformers

    def refuse(*args, **kwargs):
        raise AssertionError("a process other than rank 0 wrote an output")

    peft.PeftModel.save_pretrained = refuse
    transformers.PreTrainedModel.save_pretrained = refuse
    transformers.PreTrainedTokenizerBase.save_pretrained = refuse
    trainers.write_training_log = refuse
causal, seq2seq, train, student_train, out, config, student_config = sys.argv[1:]
tune_local(causal, train, None, os.path.join(out, "sft"), LocalTuningConfig(**json.loads(config)))
tune_student(seq2seq, student_train, None, os.path.join(out, "student"), DistillTuningConfig(**json.loads(student_config)))
"""


def _config(batch_size, **overrides):
    values = dict(
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        max_steps=STEPS,
        batch_size=batch_size,
        max_input_length=64,
        max_target_length=32,
        logging_steps=1,
        device="cpu",
    )
    values.update(overrides)
    return values


def _log(out):
    with open(os.path.join(out, "training_log.json")) as handle:
        return json.load(handle)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    import torch

    from tunekit.components.tuning.distillation.local import (
        DistillTuningConfig,
        build_student_examples,
        tune_student,
    )
    from tunekit.components.tuning.lora import LocalTuningConfig
    from tunekit.components.tuning.supervised.local import tune_local

    causal = make_tiny_model(str(tmp_path / "causal"), "causal", **CAUSAL)
    seq2seq = make_tiny_model(str(tmp_path / "seq2seq"), "seq2seq", **SEQ2SEQ)
    train = tmp_path / "train.jsonl"
    write_jsonl(
        str(train),
        [{"prompt": f"Route: {MESSAGES[i % 6]}\nTeam:", "completion": LABELS[i % 4]} for i in range(24)],
    )
    problems = [
        {
            "input_text": f"Mia has {i} pens, buys 2 more. How many?",
            "output_text": str(i + 2),
            "rationale": f"{i} + 2",
        }
        for i in range(24)
    ]
    student_train = tmp_path / "student.jsonl"
    write_jsonl(str(student_train), build_student_examples(problems, alpha=0.3)[0])

    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEKIT_PROGRESS": "off"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [*command, str(script), causal, seq2seq, str(train), str(student_train), str(two)]
        + [json.dumps(_config(4)), json.dumps(_config(4, finetuning="full"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = tmp_path / "one"
        tune_local(causal, str(train), None, str(one / "sft"), LocalTuningConfig(**_config(8)))
        tune_student(
            seq2seq,
            str(student_train),
            None,
            str(one / "student"),
            DistillTuningConfig(**_config(8, finetuning="full")),
        )
    finally:
        torch.set_num_threads(threads)

    for name in ("sft", "student"):
        single, double = _log(one / name), _log(two / name)
        assert double["summary"]["processes"] == 2 and single["summary"]["processes"] == 1
        assert (
            [e["step"] for e in double["log"]] == [e["step"] for e in single["log"]] == list(range(1, STEPS + 1))
        )
        assert [e["loss"] for e in double["log"]] == pytest.approx(
            [e["loss"] for e in single["log"]], rel=TOLERANCE
        )
    # The student's per-task losses are averaged over both processes too.
    single, double = _log(one / "student")["log"], _log(two / "student")["log"]
    for task in ("label", "rationale"):
        assert [e["task_losses"][task] for e in double] == pytest.approx(
            [e["task_losses"][task] for e in single], rel=TOLERANCE
        )
    assert os.path.isfile(two / "sft" / "adapter_model.safetensors")
    assert os.path.isfile(two / "student" / "model.safetensors")
