"""egress-tui: see every host a container talks to, and lock it down to an allowlist."""

if __name__ != "egress_tui":
    # The folder is tui/, but the package installs as egress_tui: imported under the folder's
    # name, every module would exist twice (and "tui" is another project's name on PyPI).
    raise ImportError(f"import egress_tui, not {__name__} (the tui/ folder installs as egress_tui)")

__version__ = "0.1.0"
