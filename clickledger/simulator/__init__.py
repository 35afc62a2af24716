"""Simulated traffic: one plan, sent three ways.

- `plan`: the traffic plan (`plan_traffic`), a pure function of the config, the partners'
  keys and a seed; `steps` holds what it is made of, `dialects` puts each postback in its
  seed system's words.
- `sending`: a step made into a request, sent through a client, its answer read;
  `clients`: the HTTP client and the in-process one, with one `send`.
- `run`: the one loop that sends a plan (`run_plan`), and `clickledger simulate` against a
  running receiver (`simulate`, `main`); `summary`: what a run sent and got back.
- `history`: past days sent through the receiver in process with a simulated clock
  (`simulate_history`, for the demo).
- `offline`: `clickledger simulate --offline` (`generate_log`): days captured in process as
  templates (`templates`), then written as a large log without HTTP.
"""
