"""tunekit pipelines: one module per method, plus compile, run and submit."""
