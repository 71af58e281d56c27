"""Exact token counts through the Vertex count-tokens API, for the rows whose estimate comes near a limit.

Optional: used only when a project is given. The client is injectable (any object with google-genai's
``models.count_tokens(model=, contents=, config=)``), so tests use a fake and never contact Google.
"""

from __future__ import annotations

from collections.abc import Callable

from tunekit.components.data_validation import formats


def row_to_request(row: dict) -> tuple[list[dict], str | None]:
    """A dataset row as Gemini ``contents`` and system text, the way the tuning service counts it.

    Preference rows count the prompt and both completions, since both are sent.
    """
    if isinstance(row.get("contents"), list):
        contents = list(row["contents"])
        for item in row.get("completions") or []:
            if isinstance(item, dict) and isinstance(item.get("completion"), dict):
                contents.append(item["completion"])
        instruction = row.get("systemInstruction") or row.get("system_instruction")
        system = None
        if isinstance(instruction, dict):
            system = "\n".join(str(p.get("text", "")) for p in instruction.get("parts", []) if isinstance(p, dict))
        return contents, system
    fmt = formats.detect_format(row) or formats.TEXT_PAIR
    example = formats.to_example({k: v for k, v in row.items() if not k.startswith("candidate_")}, fmt)
    record = formats.to_gemini(example)
    for key in ("candidate_0", "candidate_1"):
        if isinstance(row.get(key), str):
            record["contents"].append({"role": "model", "parts": [{"text": row[key]}]})
    return record["contents"], example.system


def vertex_token_counter(
    project: str, location: str, model: str, client: object | None = None
) -> Callable[[dict], int]:
    """A counter of one row's tokens with ``model``'s tokenizer on Vertex AI.

    Args:
        project: Google Cloud project.
        location: Vertex AI region.
        model: The base model id (e.g. ``gemini-2.5-flash``).
        client: A google-genai client (or a fake with ``models.count_tokens``); built for Vertex when None.
    """
    if client is None:
        from tunekit.components.model_clients.vertex import make_genai_client

        client = make_genai_client(project, location)

    def count(row: dict) -> int:
        from google.genai import types

        contents, system = row_to_request(row)
        config = types.CountTokensConfig(system_instruction=system) if system else None
        response = client.models.count_tokens(model=model, contents=contents, config=config)
        return int(response.total_tokens or 0)

    return count
