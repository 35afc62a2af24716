"""The receiver: the HTTP app, its decisions, the log writer and the click index."""
