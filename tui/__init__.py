"""egress-tui: see every host a container talks to, and lock it down to an allowlist."""

__version__ = "0.1.0"
