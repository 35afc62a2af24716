"""The pipeline: staging, the tables, reconciliation, the story and the wallet credit job."""
