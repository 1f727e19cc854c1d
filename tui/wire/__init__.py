"""Parsers for what comes off the wire: capture files, link/IP headers, TLS, QUIC, DNS."""
