"""Train and serve the same text: the tokens a causal model is trained on are the tokens evaluation and
``tunekit serve`` generate from, rendered with the model's own chat template, ending with the same ``eos``."""

from __future__ import annotations

import json

import pytest

from tunekit.components.model_clients.base import GenerationConfig, Prompt
from tunekit.components.model_clients.hf import HFLocalClient, encode_prompt, prompt_text
from tunekit.components.tuning.lora import LocalTuningConfig, featurize, read_prompt_completions
from tunekit.components.tuning.tiny import CAUSAL, make_tiny_model

# A ChatML-like template (the layout of SmolLM2's and Qwen's): turn markers the bare text never has.
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SYSTEM, HISTORY = "Route the ticket.", (("user", "hello"), ("model", "Hi, what is the issue?"))
QUESTION, ANSWER = "my card was charged twice", "billing"


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = str(tmp_path_factory.mktemp("chat-model"))
    make_tiny_model(folder, kind=CAUSAL, hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def _recording(client: HFLocalClient) -> list[list[int]]:
    """What the model's ``generate`` is given (the prompt's ids, padding dropped) from now on."""
    seen: list[list[int]] = []
    generate = client.model.generate

    def record(*, input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            seen.append([i for i, m in zip(ids, mask, strict=True) if m])
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    client.model.generate = record
    return seen


def test_training_evaluation_and_serve_see_the_same_tokens(chat_model, tmp_path):
    from fastapi.testclient import TestClient

    from tunekit.components.deployment.serve import load_model, make_app, resolve_model

    # Training: a chat row as the trainers read it, tokenised by featurize.
    train = tmp_path / "train.jsonl"
    messages = [{"role": "system", "content": SYSTEM}]
    messages += [{"role": role, "content": text} for role, text in HISTORY]
    messages += [{"role": "user", "content": QUESTION}, {"role": "model", "content": ANSWER}]
    train.write_text(json.dumps({"messages": messages}) + "\n")
    (row,) = read_prompt_completions(str(train))
    config = LocalTuningConfig(max_input_length=512, max_target_length=32)
    client = HFLocalClient(chat_model, device="cpu")
    tokenizer = client.tokenizer
    (features,) = featurize([row], tokenizer, is_encoder_decoder=False, config=config)
    answer_ids = tokenizer(ANSWER, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    trained_prompt = features.input_ids[: len(features.input_ids) - len(answer_ids)]
    assert features.input_ids[len(trained_prompt) :] == answer_ids  # the completion, then eos
    assert features.labels == [-100] * len(trained_prompt) + answer_ids

    # The model's own chat template renders the prompt, ready for the assistant's turn.
    rendered = tokenizer.decode(trained_prompt)
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert f"user: {QUESTION}" in rendered

    # Evaluation: the same prompt through the local client.
    seen = _recording(client)
    prompt = Prompt(QUESTION, system=SYSTEM, history=HISTORY)
    client.generate([prompt], GenerationConfig(max_output_tokens=2))
    assert seen == [trained_prompt]
    # Generation stops at the token the completions ended with.
    assert client.eos_id == features.input_ids[-1]

    # tunekit serve: the same conversation as OpenAI chat messages over HTTP.
    served = load_model(resolve_model(chat_model))
    seen = _recording(served.client)
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hello"}]
    chat += [{"role": "assistant", "content": HISTORY[1][1]}, {"role": "user", "content": QUESTION}]
    with TestClient(make_app(served)) as http:
        reply = http.post("/v1/chat/completions", json={"messages": chat, "max_tokens": 2})
    assert reply.status_code == 200, reply.text
    assert seen == [trained_prompt]
    assert served.client.eos_id == features.input_ids[-1]


def test_a_long_prompt_keeps_the_template_and_loses_the_end_of_its_text(chat_model):
    client = HFLocalClient(chat_model, device="cpu")
    tokenizer = client.tokenizer
    text = prompt_text(Prompt("x" * 400))
    ids, truncated = encode_prompt(tokenizer, text, is_encoder_decoder=False, max_length=120)
    assert truncated and len(ids) <= 120
    rendered = tokenizer.decode(ids)
    assert rendered.startswith("<|im_start|>user\nxxx") and rendered.endswith("<|im_start|>assistant\n")


def test_a_tokenizer_without_a_template_gets_the_bare_text(tmp_path):
    folder = make_tiny_model(str(tmp_path / "plain"), kind=CAUSAL, hidden_size=32, num_hidden_layers=1)
    client = HFLocalClient(folder, device="cpu")
    tokenizer = client.tokenizer
    ids, truncated = encode_prompt(tokenizer, "abc", is_encoder_decoder=False, max_length=64)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    assert (ids, truncated) == (bos + tokenizer("abc", add_special_tokens=False)["input_ids"], False)
