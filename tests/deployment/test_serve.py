"""``tunekit serve``: tiny local models answer the project's own OpenAI-compatible client; MiniLM embeds."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from tunekit.components.deployment import local_registry
from tunekit.components.deployment.serve import load_model, make_server, resolve_model
from tunekit.components.model_clients.backends import make_engine
from tunekit.components.model_clients.base import OK, TRUNCATED, GenerationConfig, Prompt
from tunekit.components.model_clients.hf import HFLocalClient
from tunekit.components.tuning.tiny import make_tiny_model


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("models")
    seq2seq = make_tiny_model(
        str(root / "seq2seq"), "seq2seq", d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2
    )
    causal = make_tiny_model(
        str(root / "causal"), "causal", hidden_size=32, intermediate_size=64, num_hidden_layers=1
    )
    # A LoRA adapter as the local tuning step saves it (untrained: B starts at zero, so it behaves as its base).
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(causal)
    adapter = str(root / "adapter")
    get_peft_model(base, LoraConfig(r=2, target_modules="all-linear")).save_pretrained(adapter)
    return {"seq2seq": seq2seq, "causal": causal, "adapter": adapter}


class Running:
    """A served model on 127.0.0.1 (random port) in a background thread."""

    def __init__(self, spec):
        self.model = load_model(spec)
        self.server = make_server(self.model, "127.0.0.1", 0, quiet=True)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def ask(base_url, name, prompts, max_tokens=8):
    engine = make_engine(
        "openai", name, options={"base_url": base_url, "api_key_env": ""}, engine_options={"max_attempts": 1}
    )
    try:
        return engine.generate(prompts, GenerationConfig(max_output_tokens=max_tokens))
    finally:
        engine.close()


def test_seq2seq_model_answers_the_project_client(tiny_dirs):
    spec = resolve_model(tiny_dirs["seq2seq"])
    assert (spec.kind, spec.name) == ("generate", "seq2seq")
    prompts = [
        Prompt("route this ticket"),
        Prompt("second", system="be brief", history=(("user", "a"), ("model", "b"))),
    ]
    expected = HFLocalClient(tiny_dirs["seq2seq"], device="cpu").generate(
        prompts, GenerationConfig(max_output_tokens=8)
    )
    with Running(spec) as running:
        results = ask(running.base_url, "seq2seq", prompts)
        models = httpx.get(running.base_url + "/models").json()
    for got, want in zip(results, expected, strict=True):
        assert got.status in (OK, TRUNCATED), got.error
        assert got.text == want.text  # greedy: the same answer as the model loaded directly
        assert got.input_tokens == want.input_tokens > 0
        assert got.output_tokens == want.output_tokens > 0
    assert [m["id"] for m in models["data"]] == ["seq2seq"]


def test_registry_champion_with_a_lora_adapter(tiny_dirs, tmp_path):
    registry = str(tmp_path / "registry.json")
    local_registry.register_model(registry, {"model_dir": tiny_dirs["adapter"]}, purpose="support-routing")
    spec = resolve_model("registry:support-routing", registry=registry)
    assert (spec.path, spec.name, spec.kind) == (tiny_dirs["adapter"], "support-routing", "generate")
    with Running(spec) as running:
        (result,) = ask(running.base_url, "support-routing", [Prompt("hello")], max_tokens=4)
        raw = httpx.post(
            running.base_url + "/chat/completions",
            json={
                "model": "support-routing",
                "messages": [{"role": "user", "content": "hello"}],
                "max_tokens": 4,
                "n": 2,
            },
        ).json()
        bad = [
            httpx.post(running.base_url + "/chat/completions", content=b"{nope"),
            httpx.post(running.base_url + "/chat/completions", json={"messages": [], "max_tokens": 4}),
            httpx.post(
                running.base_url + "/chat/completions",
                json={"messages": [{"role": "user", "content": "x"}], "logprobs": True},
            ),
            httpx.post(running.base_url + "/embeddings", json={"input": "x"}),
        ]
    assert result.status in (OK, TRUNCATED) and result.input_tokens > 0
    assert (
        len(raw["choices"]) == 2
        and raw["usage"]["total_tokens"] == raw["usage"]["prompt_tokens"] + raw["usage"]["completion_tokens"]
    )
    assert [r.status_code for r in bad] == [400, 400, 400, 404]
    assert all(r.json()["error"]["message"] for r in bad)


def test_embeddings_from_minilm(tmp_path):
    from sentence_transformers import SentenceTransformer

    from tunekit.components.model_clients.embeddings import BUNDLED_MINILM, resolve_model_path

    path = resolve_model_path(BUNDLED_MINILM)
    spec = resolve_model(path, name="minilm")
    assert spec.kind == "embed"
    texts = ["printer offline after update", "reset my password"]
    with Running(spec) as running:
        answer = httpx.post(running.base_url + "/embeddings", json={"model": "minilm", "input": texts}).json()
        single = httpx.post(running.base_url + "/embeddings", json={"input": texts[0]}).json()
        chat = httpx.post(
            running.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
    vectors = np.array([d["embedding"] for d in answer["data"]])
    assert vectors.shape == (2, 384)
    assert [d["index"] for d in answer["data"]] == [0, 1]
    expected = SentenceTransformer(path, device="cpu", local_files_only=True).encode(texts)
    assert np.allclose(vectors, expected, atol=1e-5)
    assert np.allclose(single["data"][0]["embedding"], vectors[0], atol=1e-5)
    assert answer["usage"]["prompt_tokens"] > 4
    assert chat.status_code == 404


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "tunekit.pipelines.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("setup", "model", "message"),
    [
        (None, "{tmp}/missing", "model directory not found"),
        ("empty-dir", "{tmp}/empty", "not a model directory"),
        (None, "registry:support", "no registry file"),
        ("registry", "registry:nope", "purpose 'nope' has no champion"),
    ],
)
def test_cli_serve_errors_are_one_line(tmp_path, tiny_dirs, setup, model, message):
    registry = str(tmp_path / "registry.json")
    if setup == "empty-dir":
        os.makedirs(tmp_path / "empty")
    elif setup == "registry":
        local_registry.register_model(registry, {"model_dir": tiny_dirs["seq2seq"]}, purpose="support")
    result = run_cli("serve", model.format(tmp=tmp_path), "--registry", registry)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a fresh interpreter importing torch: ~20 s on two cores
def test_cli_serve_answers_until_stopped(tiny_dirs):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "tunekit.pipelines.cli", "serve", tiny_dirs["seq2seq"], "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/v1" in line, process.stderr.read() if process.poll() is not None else line
        deadline = time.time() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health").json()
                break
            except httpx.TransportError:
                assert time.time() < deadline
                time.sleep(0.1)
        assert health["kind"] == "generate"
        (result,) = ask(f"http://127.0.0.1:{port}/v1", "seq2seq", [Prompt("hi")], max_tokens=4)
        assert result.status in (OK, TRUNCATED) and result.output_tokens > 0
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert json.dumps(health)  # the server answered over real HTTP from a separate process
