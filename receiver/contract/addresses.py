"""IP addresses and networks: a partner's `allowed_ips`, the config's `trusted_proxies`."""

from __future__ import annotations

import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str | None) -> IPAddress | None:
    """An IP address, or None if `text` is not one.

    IPv4-mapped IPv6 is unwrapped, so ::ffff:203.0.113.5 (a dual-stack socket) still
    matches an allowlist entry 203.0.113.0/24.
    """
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]").split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def is_private_target(address: IPAddress) -> bool:
    """Whether a publisher endpoint at `address` would reach our own machine or network:
    loopback, private, link-local (cloud metadata at 169.254.169.254), unspecified, multicast
    or reserved. The forwarder refuses these unless the config allows private targets."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified
            or address.is_multicast or address.is_reserved)
