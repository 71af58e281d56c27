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


def _record_trl_prompts(monkeypatch) -> dict[str, list[list[int]]]:
    """TRL trainers' ``train`` replaced by a recorder of the prompt ids TRL itself made of the dataset's prompts.

    SFT: the ids its tokenizer made before the labels start (the loss is on the completion only); DPO: its ``prompt_ids`` column; RLOO and
    GRPO: what their ``_tokenize_prompts`` (the call before each ``generate``) makes of the ``prompt`` column.
    """
    import trl

    seen: dict[str, list[list[int]]] = {}

    def sft(self):
        rows = self.train_dataset
        seen["sft"] = [
            ids[: next(i for i, label in enumerate(labels) if label != -100)]
            for ids, labels in zip(rows["input_ids"], rows["labels"], strict=True)
        ]

    def dpo(self):
        seen["dpo"] = list(self.train_dataset["prompt_ids"])

    def sampling(name):
        def train(self):
            seen[name] = [list(ids) for ids in self._tokenize_prompts(list(self.train_dataset["prompt"]))[0]]

        return train

    monkeypatch.setattr(trl.SFTTrainer, "train", sft)
    monkeypatch.setattr(trl.DPOTrainer, "train", dpo)
    monkeypatch.setattr(trl.RLOOTrainer, "train", sampling("rloo"))
    monkeypatch.setattr(trl.GRPOTrainer, "train", sampling("grpo"))
    monkeypatch.setattr(trl.RewardTrainer, "train", lambda self: None)
    return seen


def test_preference_and_reinforcement_trainers_train_on_the_ids_evaluation_and_serve_send(
    chat_model, tmp_path, monkeypatch
):
    """SFT warm starts, DPO, RLOO and GRPO hand TRL prompts it tokenizes into exactly encode_prompt's ids."""
    from tunekit.components.data_validation.preference_convert import PreferencePair
    from tunekit.components.model_clients.base import Turn
    from tunekit.components.tuning.preference import local as preference
    from tunekit.components.tuning.reinforcement import local as reinforcement
    from tunekit.components.tuning.rewards import parse_rewards

    seen = _record_trl_prompts(monkeypatch)
    turns = [Turn(role, text) for role, text in HISTORY] + [Turn("user", QUESTION)]
    pairs = [PreferencePair(turns=turns, system=SYSTEM, line=1, chosen=ANSWER, rejected="shipping")]
    config = preference.PreferenceLocalConfig(
        sft_steps=1, reward_steps=1, rl_steps=1, batch_size=2, num_generations=2, max_new_tokens=2
    )
    preference.train_sft(chat_model, pairs, str(tmp_path / "sft"), config)
    preference.train_reward_model(chat_model, pairs, str(tmp_path / "rm"), config)
    preference.train_rloo(chat_model, str(tmp_path / "rm"), pairs, str(tmp_path / "rloo"), config)
    preference.train_dpo(chat_model, pairs, str(tmp_path / "dpo"), config)
    seen["preference_sft"] = seen.pop("sft")

    row = {
        "contents": [{"role": "user", "parts": [{"text": QUESTION}]}],
        "systemInstruction": {"parts": [{"text": SYSTEM}]},
        "references": {"answer": ANSWER},
    }
    rl_config = reinforcement.ReinforcementLocalConfig(
        sft_steps=1, rl_steps=1, batch_size=2, num_generations=2, max_new_tokens=2
    )
    rl_prompt = reinforcement.row_prompt(row)
    reinforcement.train_sft(
        chat_model, [{"prompt": rl_prompt, "completion": ANSWER}], str(tmp_path / "w"), rl_config
    )
    rewards = parse_rewards("rewards:\n  - name: short\n    length: {max_chars: 200}\n    parse: none\n")
    reinforcement.train_grpo(chat_model, [row], rewards, str(tmp_path / "grpo"), rl_config)

    # What evaluation (HFLocalClient) and serve generate from, for the same prompts.
    client = HFLocalClient(chat_model, device="cpu")
    seen_by_client = _recording(client)
    client.generate([Prompt(QUESTION, system=SYSTEM, history=HISTORY)], GenerationConfig(max_output_tokens=1))
    client.generate([Prompt(QUESTION, system=SYSTEM)], GenerationConfig(max_output_tokens=1))
    pair_ids, row_ids = seen_by_client
    assert client.tokenizer.decode(pair_ids).startswith("<|im_start|>user\n")  # the template is applied
    assert seen["preference_sft"] == seen["dpo"] == [pair_ids]
    assert seen["rloo"] == [pair_ids]
    assert seen["sft"] == [row_ids]
    assert seen["grpo"] == [row_ids]


def _bos_tokenizer(folder: str, template: str | None) -> str:
    """A Llama-like tokenizer (one token per character) that adds ``<s>`` before every text it encodes."""
    import string

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: i for i, token in enumerate(specials + list(string.printable))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=specials[3:],
    )
    if template is not None:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def vertex(monkeypatch):
    from fake_vertex import serve_fake_vertex

    yield from serve_fake_vertex(monkeypatch)


@pytest.mark.parametrize("template", ["{{ bos_token }}" + TEMPLATE, None], ids=["chat-template", "no-template"])
def test_a_vllm_endpoint_gets_the_trained_text_with_one_bos(tmp_path, vertex, template):
    """vLLM tokenizes the ``prompt`` with ``tokenizer.encode`` (its bos added): the text sent is encode_prompt's."""
    from fake_vertex import LOCATION
    from transformers import AutoTokenizer

    from tunekit.components.model_clients.backends import make_engine

    folder = _bos_tokenizer(str(tmp_path / "model"), template)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    _, endpoint = vertex.add_open_model("tunekit-chat")
    sent: list[str] = []
    vertex.set_responder(lambda p: sent.append(p) or "billing", model=endpoint)
    engine = make_engine("vertex_vllm", endpoint, options={"location": LOCATION, "tokenizer": folder})
    prompt = Prompt(QUESTION, system=SYSTEM, history=HISTORY)
    (answer,) = engine.generate([prompt], GenerationConfig(max_output_tokens=3))
    engine.close()
    assert answer.text == "billing"
    trained, _ = encode_prompt(tokenizer, prompt_text(prompt), is_encoder_decoder=False, max_length=1024)
    (text,) = sent
    # What vLLM makes of the text (tokenizer.encode, special tokens added) is what the model trained on.
    assert tokenizer.encode(text) == trained and trained.count(tokenizer.bos_token_id) == 1
    assert not text.startswith("<s>")
    if template is not None:
        assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")


def test_a_folder_without_a_tokenizer_is_one_clear_error(tmp_path):
    from tunekit.components.common.errors import UserError
    from tunekit.components.model_clients.backends import make_engine

    with pytest.raises(UserError, match="no tokenizer could be loaded"):
        make_engine("vertex_vllm", "projects/p/locations/l/endpoints/1", options={"tokenizer": str(tmp_path)})


def test_the_preference_evaluation_asks_the_policy_what_training_and_serve_send(chat_model):
    # Win rates and KL were measured on the bare prompt while the policy trained on its chat template.
    from tunekit.components.evaluation.preference.steps import CausalPolicy

    text = prompt_text(Prompt(QUESTION))
    expected, _ = encode_prompt(
        HFLocalClient(chat_model).tokenizer, text, is_encoder_decoder=False, max_length=1024
    )
    policy = CausalPolicy(chat_model)
    seen: list[list[int]] = []
    generate = policy.model.generate

    def record(*, input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            seen.append([i for i, m in zip(ids, mask, strict=True) if m])
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    policy.model.generate = record
    policy.generate([text], max_new_tokens=2)
    assert seen == [expected]
    # log p(answer | prompt) is taken after the same prompt ids.
    import torch

    answer_ids = policy.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = policy.model(input_ids=torch.tensor([expected + answer_ids])).logits[0, len(expected) - 1 : -1]
    by_hand = float(
        torch.log_softmax(logits.float(), dim=-1).gather(1, torch.tensor(answer_ids).unsqueeze(1)).sum()
    )
    assert policy.logprobs([text], [ANSWER])[0] == pytest.approx(by_hand, abs=1e-4)
