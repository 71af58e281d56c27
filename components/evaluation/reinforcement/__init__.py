"""Evaluating reinforcement tuning: rewards and the task metric on held-out prompts."""
