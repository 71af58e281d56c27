"""The model-client interface every component uses to get text from a model.

A client turns a list of prompts into a list of :class:`Generation`, one per prompt, in order. Nothing is
dropped: a prompt that did not get a clean answer comes back with a status that says why.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# Statuses of a generation. Everything but OK is counted in reports.
OK = "ok"
BLOCKED = "blocked"  # stopped by safety filters
TRUNCATED = "truncated"  # hit max_output_tokens
EMPTY = "empty"  # the model answered nothing
FAILED = "failed"  # failed after retries
STATUSES = (OK, BLOCKED, TRUNCATED, EMPTY, FAILED)


@dataclass(frozen=True)
class Prompt:
    """What a model is asked.

    Attributes:
        text: The user turn (or the whole prompt for a single-turn request).
        system: An optional system instruction.
        history: Earlier ``(role, text)`` turns, role ``user`` or ``model``, before ``text``.
    """

    text: str
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()


@dataclass
class Turn:
    """One turn of a conversation.

    Attributes:
        role: ``user`` or ``model``.
        text: The turn's text (text parts joined).
        files: ``fileData`` parts, kept as given (Gemini format only).
    """

    role: str
    text: str
    files: list[dict] = field(default_factory=list)


def render_prompt(system: str | None, turns: list[Turn]) -> str:
    """The plain-text prompt an open model sees, at training and at prediction time alike.

    A single user turn with no system text is passed through unchanged, so text-pair data trains on exactly
    its ``input_text``; anything else is laid out with role tags.
    """
    if not system and len(turns) == 1 and turns[0].role == "user":
        return turns[0].text
    lines = [f"system: {system}"] if system else []
    lines += [f"{turn.role}: {turn.text}" for turn in turns]
    if turns and turns[-1].role == "user":
        lines.append("model:")
    return "\n".join(lines)


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings shared by every backend.

    Attributes:
        max_output_tokens: Upper bound on generated tokens.
        temperature: Sampling temperature; 0 means greedy.
        top_p: Nucleus sampling mass (used when temperature > 0).
        candidate_count: Samples per prompt (self-consistency).
        seed: Seed for sampling, when the backend supports it.
    """

    max_output_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    candidate_count: int = 1
    seed: int | None = None

    def request_fields(self, *, max_tokens: str, count: str) -> dict[str, Any]:
        """The settings as a generation API's request fields (its names of the token budget and the sample count).

        ``top_p`` is sent only when sampling (greedy decoding ignores it), ``seed`` only when set.
        """
        fields: dict[str, Any] = {
            max_tokens: self.max_output_tokens,
            "temperature": self.temperature,
            count: self.candidate_count,
        }
        if self.temperature > 0:
            fields["top_p"] = self.top_p
        if self.seed is not None:
            fields["seed"] = self.seed
        return fields


@dataclass
class Generation:
    """A model's answer to one prompt.

    Attributes:
        text: The generated text ('' when there is none).
        status: One of :data:`STATUSES`.
        error: Why the status is not OK, when it is not.
        input_tokens: Prompt tokens billed or counted.
        output_tokens: Generated tokens billed or counted.
        candidates: All sampled texts when ``candidate_count`` > 1 (``text`` is the first).
    """

    text: str
    status: str = OK
    error: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    candidates: list[str] = field(default_factory=list)


class ModelClient(abc.ABC):
    """Generates text for prompts. Implementations keep order and return one result per prompt."""

    #: A short name of the backend, used in cache keys and reports.
    backend: str = "abstract"

    @abc.abstractmethod
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Generates one :class:`Generation` per prompt, in order."""

    def generate_texts(self, prompts: Sequence[str], config: GenerationConfig | None = None) -> list[str]:
        """Convenience: plain-string prompts in, generated texts out."""
        return [g.text for g in self.generate([Prompt(p) for p in prompts], config)]

    def close(self) -> None:
        """Releases resources held by the client (models, connections)."""
        return None


class FakeClient(ModelClient):
    """A scripted client for tests: answers from a mapping or a function, and records what it was asked.

    Args:
        answers: ``prompt text -> answer`` or a callable taking the :class:`Prompt`; a missing key answers ''.
    """

    backend = "fake"

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls: list[Prompt] = []

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Answers each prompt from the script."""
        out = []
        for prompt in prompts:
            self.calls.append(prompt)
            text = self.answers(prompt) if callable(self.answers) else self.answers.get(prompt.text, "")
            out.append(Generation(text=text, status=OK if text else EMPTY))
        return out
