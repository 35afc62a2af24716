"""clickledger's front door: the `clickledger` command line, the demo network, the traffic
simulators and the offline log generator.

It sits above both halves of the system and may import either: `receiver` (the HTTP
receiver and its append-only log) and `pipeline` (the tables derived from that log).
Neither of them imports this package.
"""
