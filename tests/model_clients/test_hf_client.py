import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import (
    EMPTY,
    OK,
    TRUNCATED,
    GenerationConfig,
    Prompt,
    Turn,
    render_prompt,
)
from tunekit.components.model_clients.hf import HFLocalClient, encode_prompt, prompt_text
from tunekit.components.tuning.tiny import make_tiny_model

# The package imports torch lazily; these tests need it.
torch = pytest.importorskip("torch")

CAUSAL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4}
SEQ2SEQ = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}
EOS = 1
LETTER_A = ord("a") + 3  # ByT5 ids are byte + 3


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    return make_tiny_model(str(tmp_path_factory.mktemp("causal")), "causal", **CAUSAL)


def _force_token(client, token_id):
    """Makes the tiny Llama always predict ``token_id``: every position's hidden state becomes the same vector."""
    model = client.model.model
    with torch.no_grad():
        model.embed_tokens.weight.zero_()
        model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        client.model.lm_head.weight.zero_()
        client.model.lm_head.weight[token_id, 0] = 1.0


def test_truncated_when_max_output_tokens_is_hit(causal_dir):
    client = HFLocalClient(causal_dir, device="cpu")
    _force_token(client, LETTER_A)
    [generation] = client.generate([Prompt("hello")], GenerationConfig(max_output_tokens=3))
    assert (generation.text, generation.status) == ("aaa", TRUNCATED)
    assert "max_output_tokens=3" in generation.error
    # a decoder-only prompt is the bare bytes: no bos in ByT5, no eos before the completion
    assert (generation.input_tokens, generation.output_tokens) == (5, 3)


def test_empty_when_the_model_stops_at_once(causal_dir):
    client = HFLocalClient(causal_dir, device="cpu")
    _force_token(client, EOS)
    generations = client.generate([Prompt("hi"), Prompt("hello there")], GenerationConfig(max_output_tokens=5))
    assert [(g.text, g.status, g.output_tokens) for g in generations] == [("", EMPTY, 1), ("", EMPTY, 1)]
    assert all(g.error for g in generations)


def test_ok_when_the_model_stops_after_text(causal_dir):
    client = HFLocalClient(causal_dir, device="cpu")
    # padding after eos (another row of the batch still generating) is not part of the answer
    assert client._decode([LETTER_A, LETTER_A + 1, EOS, 0, 0], GenerationConfig()) == ("ab", OK, 3)


def test_sampling_is_seeded_and_returns_candidates(causal_dir):
    client = HFLocalClient(causal_dir, device="cpu")
    config = GenerationConfig(max_output_tokens=4, temperature=1.0, candidate_count=3, seed=7)
    prompts = [Prompt("one"), Prompt("two")]
    first, second = client.generate(prompts, config), client.generate(prompts, config)
    assert [g.candidates for g in first] == [g.candidates for g in second]
    assert all(len(g.candidates) == 3 and g.text == g.candidates[0] for g in first)
    greedy = client.generate(prompts, GenerationConfig(max_output_tokens=4, candidate_count=2))
    assert all(g.candidates == [g.text, g.text] for g in greedy)


def test_seq2seq_prompt_gets_eos_and_generation_per_prompt(tmp_path):
    path = make_tiny_model(str(tmp_path), "seq2seq", **SEQ2SEQ)
    client = HFLocalClient(path, batch_size=2, device="cpu", max_input_length=8)
    generations = client.generate([Prompt("hello"), Prompt("a longer prompt than eight bytes"), Prompt("")])
    assert [g.input_tokens for g in generations] == [6, 8, 1]


def test_prompt_text_matches_training_rendering():
    assert prompt_text(Prompt("just the text")) == "just the text"
    prompt = Prompt("and now?", system="be brief", history=(("user", "hi"), ("model", "hello")))
    expected = render_prompt("be brief", [Turn("user", "hi"), Turn("model", "hello"), Turn("user", "and now?")])
    assert prompt_text(prompt) == expected
    assert expected.endswith("\nmodel:")


def test_encode_prompt_truncates_the_end(causal_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(causal_dir)
    assert encode_prompt(tokenizer, "abcdef", is_encoder_decoder=False, max_length=4) == (
        [100, 101, 102, 103],
        True,
    )
    ids, truncated = encode_prompt(tokenizer, "abcdef", is_encoder_decoder=True, max_length=4)
    assert (ids, truncated) == ([100, 101, 102, EOS], True)
    assert encode_prompt(tokenizer, "ab", is_encoder_decoder=True, max_length=4) == ([100, 101, EOS], False)


def test_missing_directory_and_unavailable_gpu(tmp_path, causal_dir):
    with pytest.raises(UserError, match="directory not found"):
        HFLocalClient(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(UserError, match="unknown device"):
        HFLocalClient(causal_dir, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no GPU"):
            HFLocalClient(causal_dir, device="cuda")
