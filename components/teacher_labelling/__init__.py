"""tunekit."""
