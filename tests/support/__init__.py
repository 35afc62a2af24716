"""Helpers the tests share (no fixtures: those are in the conftest.py files).

- paths: REPO, the repository's root.
- clock: START and FixedClock, the app's settable clock.
- ids: uuid_like and IdSequence, predictable click and event ids.
- network: TEST_CONFIG (the test network's config.toml), its hashed key, and rewrite_config.
- harness: Harness, a Falcon TestClient that checks one log record per request; read_log.
- live_server: LiveServer, start_live_server and stop_live_server (a real `clickledger serve`).
- log_builder: LogBuilder and friends, hand-written logs for the pipeline's tests.
- traffic: send_every_kind, requests that make every kind of log record.
"""
