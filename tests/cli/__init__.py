"""The front door: the `clickledger` command line, the demo, the simulator and the offline generator."""
