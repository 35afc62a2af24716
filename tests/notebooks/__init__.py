"""The marimo notebooks and pipeline.notebook_support."""
