"""Retraining."""
