"""clickledger's tests, one folder per part (a package each, so same-named modules never collide):

- receiver/: the HTTP app, clicks, postbacks and their authentication, the config store, the
  click index and its snapshots, the log writer, the OpenAPI document, the seed documents' examples.
- contract/: receiver.contract, what crosses from the receiver to the pipeline (record, framing,
  DataDir), and that the same traffic gives the same log and tables.
- pipeline/: staging and the tables, golden and property tests, reconciliation, the support story,
  views, the wallet credit job, the schemas, the troubleshooting advice, `clickledger run|credit|reconcile`.
- reliability/: the guarantees' loops (docs/guarantees.md): crash, disk, overload, concurrency,
  hostile input, redirects, the log's faults, a corrupt log, a killed credit job, the state
  machine, fuzzing and schemathesis.
- notebooks/: the marimo notebooks and what they share.
- cli/: the `clickledger` command line, the demo, the simulator and the offline generator.
- project/: the repository itself: README and docs, Makefile and .gitignore, the layers (import-linter).

support/ holds the helpers several folders share, imported by name (`from tests.support.harness
import Harness`); tests/conftest.py holds the fixtures several folders use.
"""
