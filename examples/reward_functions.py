"""A reward written in Python for examples/reinforcement_rewards.yaml.

A python reward is a function ``(example, response) -> float`` with the arguments Vertex's code-execution scorer
gives ``evaluate``: ``example`` is the prompt row in Vertex's layout (``contents``, ``references``,
``systemInstruction``), ``response`` a Gemini ``Content`` (``{"role": "model", "parts": [{"text": ...}]}``). On
Vertex this module's source is the code snippet (standard library only: it runs in Vertex's sandbox); locally it
is imported. Rewards are clipped to [-1, 1].
"""


def no_repeated_words(example: dict, response: dict) -> float:
    """1.0 when no word of the response repeats, else 0.0 (sampling from a young policy stutters)."""
    text = "".join(part.get("text", "") for part in response.get("parts", []))
    words = text.lower().split()
    return 1.0 if len(words) == len(set(words)) else 0.0
