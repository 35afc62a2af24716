"""The forwarder: tell publishers (affiliates, earn-app publishers) about their conversions,
durably (docs/forwarding.md).

- plan: which deliveries exist, one per (conversion, event, endpoint), and their points;
- render: macros URL-encoded where they land, the POST body, the signature, masked URLs;
"""
