"""Platform presets: one TOML file per platform (receiver.contract.profiles loads them).

Each file holds the keys a [[partners]] entry of config.toml can set (params, statuses,
amounts, answers, signature_scheme, status_updates, macros), plus its `name` and `docs`: the
platform documentation pages it was built from. Adding a platform is adding a file.
"""
