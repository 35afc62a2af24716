"""The marimo notebooks (reconciliation, troubleshooting, overview), installed with the
package as `clickledger.notebooks` so that `clickledger notebook NAME` runs them from any
directory. Each is a plain marimo file: `marimo edit`, `marimo run`, or `python NAME.py`."""
