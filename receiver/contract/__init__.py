"""What crosses from the receiver to the pipeline (filled in by the house issue)."""
