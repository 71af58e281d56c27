"""Shared helpers used by every stage: image names, URIs, JSON Lines I/O and user-facing errors."""
