"""Data directories with the demo network and publisher endpoints, for the forwarder's tests."""

from __future__ import annotations

from pathlib import Path

from tests.support.log_builder import make_data_dir


def forwarding_data(path: Path, endpoints: str, *, allow_private: bool = True) -> Path:
    """A demo data directory whose config also has `endpoints` ([[affiliates]] tables)."""
    data = make_data_dir(path)
    config = data / "config.toml"
    head = "allow_private_targets = true\n" if allow_private else ""
    config.write_text(head + config.read_text(encoding="utf-8") + "\n" + endpoints, encoding="utf-8")
    return data


def set_endpoints(data: Path, endpoints: str) -> None:
    """Replace the [[affiliates]] tables of a forwarding_data directory's config."""
    config = data / "config.toml"
    text = config.read_text(encoding="utf-8")
    cut = text.find("[[affiliates]]")
    config.write_text((text[:cut] if cut != -1 else text + "\n") + endpoints, encoding="utf-8")
