"""receiver.contract: what crosses from the receiver to the pipeline."""
