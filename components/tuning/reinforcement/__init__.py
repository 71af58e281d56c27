"""Reinforcement tuning: TRL GRPO locally, Vertex REINFORCEMENT_TUNING on Gemini."""
