"""The guarantees of docs/guarantees.md, each tested by a loop that tries to break it."""
