"""Open-model embedding tuning mechanics with the real pretrained MiniLM (a few steps, a few rows)."""

import json
import os

import numpy as np
import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.embeddings import (
    BUNDLED_MINILM,
    load_sentence_transformer,
    resolve_model_path,
)
from tunekit.components.tuning.embedding import local as emb

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DOCS = {
    "d-brn": "SWF-V2 BRN-1: PSU brownout lockout. Reseat the DC input and hold RST for 12 s.",
    "d-wdr": "SWF-V2 WDR-4: watchdog reset loop. Flash the recovery image from the SVC partition.",
    "d-asf": "HLC-R3 ASF-3: RF association failure on the 2G4 radio. Re-run the SSID scan.",
    "d-iql": "HLC-R3 IQL-2: quiescent current leak. Disable the always-on sensor rail.",
    "d-ttr": "TRN-T1 TTR-5: thermal throttle trip. Lower the duty profile to ECO-2.",
    "d-ocm": "TRN-T1 OCM-8: OTA image checksum mismatch. Purge the staging slot.",
}
QUERIES = {
    "q1": "my robot vacuum won't turn on",
    "q2": "robovac keeps restarting by itself",
    "q3": "router can't connect to wifi",
    "q4": "router battery drains fast",
    "q5": "thermostat overheats",
    "q6": "thermostat firmware update fails",
}
TRAIN = [("q1", "d-brn"), ("q2", "d-wdr"), ("q3", "d-asf"), ("q4", "d-iql"), ("q5", "d-ttr"), ("q6", "d-ocm")]


def write_set(folder, labels=TRAIN):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as handle:
        for doc_id, text in DOCS.items():
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}) + "\n")
    with open(folder / "queries.jsonl", "w") as handle:
        for query_id, text in QUERIES.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
    with open(folder / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in labels))
    return {name: str(folder / name) for name in ("corpus.jsonl", "queries.jsonl", "train.tsv")}


def tune(paths, output_dir, **kwargs):
    """The bundled MiniLM tuned on the files of :func:`write_set`, without progress bars."""
    return emb.tune_embedding_model(
        base_model=BUNDLED_MINILM,
        corpus_path=paths["corpus.jsonl"],
        queries_path=paths["queries.jsonl"],
        train_labels_path=paths["train.tsv"],
        output_dir=str(output_dir),
        progress=False,
        **kwargs,
    )


def test_bundled_model_resolves_to_a_directory():
    path = resolve_model_path(BUNDLED_MINILM)
    assert os.path.exists(os.path.join(path, "modules.json"))
    assert resolve_model_path("/models/mine") == "/models/mine"
    with pytest.raises(UserError, match="unknown bundled model"):
        resolve_model_path("bundled:bert")
    with pytest.raises(UserError, match="not a model directory"):
        load_sentence_transformer("/nonexistent/model")


def test_mined_negatives_are_the_third_column_of_the_training_set():
    pairs = emb.build_pairs(DOCS, QUERIES, {"q1": {"d-brn": 1.0}, "q2": {"d-wdr": 1.0}})
    dataset = emb._training_dataset(pairs, DOCS, {"q1": ["d-wdr"], "q2": ["d-brn"]}, 1)
    assert dataset.column_names == ["anchor", "positive", "negative_1"]
    assert dataset[0] == {"anchor": QUERIES["q1"], "positive": DOCS["d-brn"], "negative_1": DOCS["d-wdr"]}
    assert emb._training_dataset(pairs, DOCS, {}, 0).column_names == ["anchor", "positive"]


def test_tuning_with_hard_negatives_moves_the_model_and_saves_it(tmp_path):
    paths = write_set(tmp_path / "data")
    out = tmp_path / "tuned"
    summary = tune(
        paths, out, options=emb.EmbeddingTuningOptions(steps=3, batch_size=4, learning_rate=1e-4, hard_negatives=1)
    )
    assert summary["steps"] == 3 and summary["pairs"] == 6 and summary["hard_negatives"] == 1
    assert summary["trainer"] == "SentenceTransformerTrainer" and summary["resumed_from"] == 0
    assert np.isfinite(summary["first_loss"]) and np.isfinite(summary["last_loss"])
    assert json.load(open(out / emb.SUMMARY_FILE))["steps"] == 3
    # The training log is the trainer's log history: one entry per step (logging_steps 1), with its learning rate.
    log = json.load(open(out / "training_log.json"))["log"]
    assert [e["step"] for e in log] == [1, 2, 3]
    assert summary["first_loss"] == log[0]["loss"] and summary["last_loss"] == log[-1]["loss"]
    assert all(e["learning_rate"] >= 0 for e in log)
    assert not (out / "checkpoints").exists()  # cleared once the model is saved
    base = load_sentence_transformer(BUNDLED_MINILM)
    tuned = load_sentence_transformer(str(out))
    text = [QUERIES["q1"]]
    assert not np.allclose(base.encode(text), tuned.encode(text))

    mined = emb.mine_hard_negatives(
        base, DOCS, QUERIES, {q: {d: 1.0} for q, d in TRAIN}, count=2, skip=0, progress=False
    )
    for query_id, doc_id in TRAIN:
        assert len(mined[query_id]) == 2 and doc_id not in mined[query_id]


def test_bad_options_and_labels_fail_clearly(tmp_path):
    paths = write_set(tmp_path / "data", labels=[("q1", "d-missing")])
    with pytest.raises(UserError, match="not in the corpus"):
        tune(paths, tmp_path / "out")
    with pytest.raises(UserError, match="batch_size"):
        tune(paths, tmp_path / "out", options=emb.EmbeddingTuningOptions(batch_size=1))


def free_port() -> int:
    """A port free on this machine now (the rendezvous of a test's torchrun; others may run theirs)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Killed(Exception):
    """Stands for the container being killed in the middle of training."""


def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tmp_path, monkeypatch):
    """Killed after step 3 (checkpoints every 2 steps), the re-run resumes at step 2 and ends at step 4 in all, with
    the losses an uninterrupted run logs; a checkpoint folder cut short by the kill is not resumed from."""
    from sentence_transformers import SentenceTransformerTrainer

    paths = write_set(tmp_path / "data")
    options = emb.EmbeddingTuningOptions(steps=4, batch_size=3, learning_rate=1e-4, save_steps=2)
    whole = tune(paths, tmp_path / "whole", options=options)

    out = tmp_path / "tuned"
    step = SentenceTransformerTrainer.training_step
    calls = []

    def killed_at_the_fourth_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise Killed()
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", killed_at_the_fourth_step)
    with pytest.raises(Killed):
        tune(paths, out, options=options)
    monkeypatch.setattr(SentenceTransformerTrainer, "training_step", step)
    checkpoints = out / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2"]
    # A half-written checkpoint (the kill came while saving step 4) is deleted, not resumed from.
    (checkpoints / "checkpoint-4").mkdir()
    (checkpoints / "checkpoint-4" / "model.safetensors").write_bytes(b"partial")

    resumed = tune(paths, out, options=options)
    assert resumed["resumed_from"] == 2 and resumed["steps"] == 4
    log = json.load(open(out / "training_log.json"))["log"]
    assert [e["step"] for e in log] == [1, 2, 3, 4]
    whole_log = json.load(open(tmp_path / "whole" / "training_log.json"))["log"]
    assert [e["loss"] for e in log] == pytest.approx([e["loss"] for e in whole_log], rel=1e-4)
    assert whole["steps"] == 4


def test_two_processes_under_the_launcher_train_one_model(tmp_path):
    """torchrun with 2 CPU processes (gloo), through the GPU jobs' launcher: each process takes half of every batch,
    the embeddings are gathered for the in-batch negatives, and one model and one log are written."""
    import subprocess
    import sys

    paths = write_set(tmp_path / "data")
    out = tmp_path / "tuned"
    script = tmp_path / "train.py"
    script.write_text(
        "import json, sys\n"
        "from tunekit.components.model_clients.embeddings import BUNDLED_MINILM\n"
        "from tunekit.components.tuning.embedding import local as emb\n"
        "paths, out = json.loads(sys.argv[1]), sys.argv[2]\n"
        "emb.tune_embedding_model(base_model=BUNDLED_MINILM, corpus_path=paths['corpus.jsonl'],\n"
        "    queries_path=paths['queries.jsonl'], train_labels_path=paths['train.tsv'], output_dir=out,\n"
        "    options=emb.EmbeddingTuningOptions(steps=2, batch_size=4, learning_rate=1e-4), progress=False)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("CLUSTER_SPEC", "MASTER_ADDR", "RANK", "WORLD_SIZE")}
    env.update(MASTER_PORT=str(free_port()), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "tunekit.components.tuning.launch", "--nproc-per-node=2", "--"]
        + [sys.executable, str(script), json.dumps(paths), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.load(open(out / emb.SUMMARY_FILE))
    assert summary["processes"] == 2 and summary["steps"] == 2
    assert [e["step"] for e in json.load(open(out / "training_log.json"))["log"]] == [1, 2]
    tuned = load_sentence_transformer(str(out))
    assert not np.allclose(load_sentence_transformer(BUNDLED_MINILM).encode(["x"]), tuned.encode(["x"]))
