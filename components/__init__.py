"""tunekit components: plain typed logic per stage, each with a thin KFP wrapper in `component.py`."""
