"""Reward models and tokenizers of open causal models, shared by preference tuning and its evaluation.

A reward model is a Hugging Face sequence classifier with one output (TRL ``RewardTrainer``'s); its score of
``prompt + answer + eos`` is the reward. :func:`load_tokenizer` loads a model directory's tokenizer the way the
local preference trainers (TRL) and the evaluation both need it.
"""

from __future__ import annotations


def _no_special_tokens(token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
    return token_ids_0 + (token_ids_1 or [])


def load_tokenizer(model_dir: str):
    """The model's tokenizer, with a pad token (the eos token when it has none) and left padding for generation.

    A tokenizer that ends every encoded text with its eos token (ByT5's, which the tiny models use) is told not
    to: TRL encodes prompts on their own, and a prompt ending in "end of sequence" would teach the policy to
    answer after an end. Texts that must end with eos (the reward model's) carry it explicitly.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is not None and tokenizer("a")["input_ids"][-1:] == [tokenizer.eos_token_id]:
        tokenizer.build_inputs_with_special_tokens = _no_special_tokens
    tokenizer.padding_side = "left"
    return tokenizer


class RewardModelScorer:
    """Scores ``prompt + answer`` with a reward model directory (a one-output sequence classifier).

    The text is scored as ``RewardTrainer`` trained on it: prompt, answer, eos token.
    """

    def __init__(self, model_dir: str, batch_size: int = 16):
        import torch
        from transformers import AutoModelForSequenceClassification

        self.torch = torch
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1).eval()
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size

    def __call__(self, prompts: list[str], answers: list[str]) -> list[float]:
        """One reward per (prompt, answer)."""
        eos = self.tokenizer.eos_token or ""
        texts = [p + a + eos for p, a in zip(prompts, answers, strict=True)]
        out: list[float] = []
        with self.torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start : start + self.batch_size], return_tensors="pt", padding=True)
                out.extend(float(x) for x in self.model(**batch).logits.squeeze(-1).reshape(-1))
        return out
