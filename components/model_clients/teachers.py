"""Teachers for distilling step-by-step: one factory for every backend, a scripted teacher, and a response cache.

Backends (``teacher_backend``): those of the shared engine
(:func:`~tunekit.components.model_clients.backends.make_engine`: ``vertex``, ``vertex_batch``, ``openai`` for any
OpenAI-compatible endpoint such as vLLM, Ollama or a llama.cpp server, ``hf``, ``fake``), plus ``scripted``:
:class:`ScriptedTeacher`, which answers from a JSONL file of completions written beforehand. It calls no model: the
example configs use it so that they run offline, deterministically, and they say so.

Every teacher runs behind the engine, with its response cache when a cache directory is given, so a retried step or
a re-run with the same cache never pays twice for a prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import EMPTY, OK, Generation, GenerationConfig, ModelClient, Prompt

SCRIPTED = "scripted"

_INPUT_KEYS = ("input_text", "input", "question", "text")


def _estimate_tokens(text: str) -> int:
    from tunekit.components.model_clients.pricing import estimate_tokens

    return estimate_tokens(text)


class ScriptedTeacher(ModelClient):
    """A deterministic teacher that answers from completions written beforehand (no model is called).

    Script rows (JSON Lines): ``input_text`` (or ``input``/``question``/``text``), the input the completion
    answers, and ``completion``, the teacher's raw text ("... So the answer is 12."). A prompt is answered with
    the completion of the script input that appears last in it: a few-shot prompt ends with its query, after the
    exemplars. A prompt that contains no script input gets an empty answer (status ``empty``), as a model that
    said nothing would.

    Token counts are estimated (about four characters a token), so cost reports still mean something.

    A script may also hold, per row, the answer the teacher gives to a plain few-shot *label* prompt (column
    ``label``, read with ``field="label"``: the teacher-labelling step's scripted teacher); a row without it is
    unanswered there.

    Args:
        rows: The script rows.
        field: The column holding the answers: ``completion`` (chain of thought) or ``label``.
    """

    backend = SCRIPTED

    def __init__(self, rows: Sequence[Mapping], field: str = "completion"):
        self.script: dict[str, str | None] = {}
        for number, row in enumerate(rows, start=1):
            key = next((str(row[k]) for k in _INPUT_KEYS if isinstance(row.get(k), str)), None)
            if key is None or not isinstance(row.get("completion"), str):
                raise UserError("a script row needs 'input_text' and 'completion' strings", line=number)
            value = row.get(field)
            if value is not None and not isinstance(value, str):
                raise UserError(f"a script row's '{field}' must be a string", line=number)
            # Every input stays a key (None: unanswered), so that its prompt is never answered for an exemplar.
            self.script[key] = value
        # Longer inputs first, so that an input that contains another one wins when both appear at one place.
        self._keys = sorted(self.script, key=len, reverse=True)

    @classmethod
    def from_jsonl(cls, path: str, field: str = "completion") -> ScriptedTeacher:
        """Reads a script file (a local path or ``gs://`` URI); ``field`` names the answer column.

        Raises:
            UserError: The file is missing or a row is malformed.
        """
        from tunekit.components.common import uris
        from tunekit.components.common.jsonl import read_jsonl

        try:
            with uris.local_copy(path) as local:
                return cls(read_jsonl(local), field=field)
        except FileNotFoundError:
            raise UserError("teacher script not found", path=path, field="teacher_script_uri") from None
        except UserError as exc:
            raise UserError(exc.message, path=path, line=exc.line, field="teacher_script_uri") from None

    def answer(self, text: str) -> str | None:
        """The scripted completion for a prompt, or None."""
        best, best_at = None, -1
        for key in self._keys:
            at = text.rfind(key)
            if at > best_at:
                best, best_at = key, at
        return None if best is None else self.script[best]

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig | None = None) -> list[Generation]:
        """Answers each prompt from the script; ``candidate_count`` copies of it when samples are asked for."""
        config = config or GenerationConfig()
        out = []
        for prompt in prompts:
            text = self.answer(prompt.text) or ""
            out.append(
                Generation(
                    text=text,
                    status=OK if text else EMPTY,
                    error="" if text else "the teacher script has no completion for this prompt",
                    input_tokens=_estimate_tokens(prompt.text),
                    output_tokens=_estimate_tokens(text),
                    candidates=[text] * config.candidate_count if config.candidate_count > 1 else [],
                )
            )
        return out


def make_teacher(
    backend: str,
    model: str,
    *,
    project: str = "",
    location: str = "",
    script_uri: str = "",
    options: Mapping[str, Any] | None = None,
    engine_options: Mapping[str, Any] | None = None,
    cache_dir: str = "",
    price_table: Mapping[str, Any] | None = None,
    script_field: str = "completion",
) -> ModelClient:
    """Builds the teacher for ``backend``: an :class:`~tunekit.components.model_clients.engine.Engine`.

    Every backend goes through the shared engine (concurrency, rate limits, retries, the response cache, token
    and cost counts); ``scripted`` runs :class:`ScriptedTeacher` behind it.

    Args:
        backend: ``scripted`` or a backend of :func:`~tunekit.components.model_clients.backends.make_engine`
            (``vertex``, ``vertex_batch``, ``openai``, ``hf``, ``fake``).
        model: The teacher model: a Gemini model id, the name an OpenAI-compatible server knows, a model
            directory; for ``scripted`` only the name its cost is reported under.
        project: Google Cloud project (Vertex backends), unless ``options`` sets one.
        location: Vertex AI region, unless ``options`` sets one.
        script_uri: The script of a ``scripted`` teacher.
        options: Backend options (``make_engine``'s: ``base_url`` and ``api_key_env`` for ``openai``...).
        engine_options: The engine's options (``concurrency``, ``requests_per_minute``, ``tokens_per_minute``...).
        cache_dir: A directory (or ``gs://`` URI) for the response cache; '' for none.
        price_table: Prices per million tokens by model, on top of the defaults.
        script_field: The script column a ``scripted`` teacher answers from (``completion`` or ``label``).

    Raises:
        UserError: An unknown backend or a missing setting.
    """
    options = dict(options or {})
    if backend == SCRIPTED:
        from tunekit.components.model_clients import pricing
        from tunekit.components.model_clients.backends import ClientBackend
        from tunekit.components.model_clients.cache import ResponseCache
        from tunekit.components.model_clients.engine import Engine, EngineConfig

        if not script_uri:
            raise UserError(
                "a scripted teacher needs teacher_script_uri (its completions)", field="teacher_script_uri"
            )
        return Engine(
            ClientBackend(ScriptedTeacher.from_jsonl(script_uri, field=script_field), SCRIPTED, model),
            EngineConfig.from_dict(engine_options),
            ResponseCache(cache_dir) if cache_dir else None,
            pricing.parse_price_table(price_table),
        )
    from tunekit.components.model_clients.backends import make_engine

    if backend in ("vertex", "vertex_batch"):
        options.setdefault("project", project)
        options.setdefault("location", location)
    return make_engine(
        backend,
        model,
        options=options,
        engine_options=engine_options,
        cache_dir=cache_dir or None,
        price_table=price_table,
    )
