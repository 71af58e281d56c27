"""Supervised."""
