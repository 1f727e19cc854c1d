"""``squid``: a squid.conf fragment to ``include`` before ``http_access deny all``.

Its own ACL names (``egress_tui_*``): ``dstdomain`` for names, ``.domain`` for a wildcard with
the domain itself taken out again (``*.example.com`` does not allow ``example.com``; Squid's
``.example.com`` alone would), ``dst`` for addresses and ranges, a ``port`` ACL for each port an
entry names; an ``http_access allow`` line for each, which lets through CONNECT tunnels and
plain HTTP requests alike. Squid can express every entry exactly.

With ``ssl_bump`` (``--ssl-bump``): peek at the TLS ClientHello and splice (tunnel, never
decrypt) only when its SNI is allowed too, by ``ssl::server_name``; everything else is
terminated. A client that asks the proxy for an allowed name and then names another in its
TLS handshake (domain fronting, a shared CDN) is stopped. Needs a Squid built with OpenSSL
(Debian: ``squid-openssl``) and an ``ssl-bump`` port.
"""

from __future__ import annotations

import ipaddress

from egress_tui.exports import Export, Note, Options, Source, header, notes_block, wildcard_base

PREFIX = "egress_tui"


def _group(port: int | None) -> str:
    return PREFIX if port is None else f"{PREFIX}_p{port}"


def collapse(networks) -> list[str]:
    """Networks without overlaps (Squid warns on, and then ignores, an address inside a range
    of the same ACL; nft refuses overlapping intervals)."""
    out: list[str] = []
    for version in (4, 6):
        nets = [n for n in networks if n.version == version]
        out += [str(n) if n.num_addresses > 1 else str(n.network_address)
                for n in ipaddress.collapse_addresses(nets)]
    return out


def render(source: Source, options: Options, now: float | None = None) -> Export:
    groups: dict[int | None, dict[str, list]] = {}
    for e in source.entries:
        g = groups.setdefault(e.port, {"names": [], "wild": [], "nets": []})
        if e.network is not None:
            g["nets"].append(e.network)
        elif e.wildcard:
            g["wild"].append(wildcard_base(e))
        else:
            g["names"].append(e.pattern)
    notes = list(source.skipped)
    if options.ssl_bump:
        notes += [Note(e.text(), "not checked", "an address or range: the SNI is not checked there, any name "
                                                "on it is spliced") for e in source.entries if e.network is not None]

    acls: list[str] = []
    access: list[str] = []
    bump: list[str] = []
    for port in sorted(groups, key=lambda p: -1 if p is None else p):
        g, base = groups[port], _group(port)
        cond = f" {base}" if port is not None else ""
        if port is not None:
            acls.append(f"acl {base} port {port}")
        if g["names"]:
            acls += [f"acl {base}_names dstdomain {n}" for n in dict.fromkeys(g["names"])]
            access.append(f"http_access allow{cond} {base}_names")
            if options.ssl_bump:
                acls += [f"acl {base}_sni_names ssl::server_name {n}" for n in dict.fromkeys(g["names"])]
                bump.append(f"ssl_bump splice{cond} {base}_sni_names")
        for i, domain in enumerate(dict.fromkeys(g["wild"]), 1):
            # .domain matches the domain itself too: take it out again, so that only subdomains pass
            acls += [f"acl {base}_w{i} dstdomain .{domain}", f"acl {base}_w{i}_apex dstdomain {domain}"]
            access.append(f"http_access allow{cond} {base}_w{i} !{base}_w{i}_apex")
            if options.ssl_bump:
                acls += [f"acl {base}_sni_w{i} ssl::server_name .{domain}",
                         f"acl {base}_sni_w{i}_apex ssl::server_name {domain}"]
                bump.append(f"ssl_bump splice{cond} {base}_sni_w{i} !{base}_sni_w{i}_apex")
        if g["nets"]:
            acls += [f"acl {base}_nets dst {n}" for n in collapse(g["nets"])]
            access.append(f"http_access allow{cond} {base}_nets")
            if options.ssl_bump:
                bump.append(f"ssl_bump splice{cond} {base}_nets")

    lines = header("squid" + (" --ssl-bump" if options.ssl_bump else ""), source, now)
    lines += ["#",
              "# Include it in squid.conf before 'http_access deny all' (and after your own deny rules):",
              "#   include /etc/squid/conf.d/egress-tui.conf",
              "# Each 'http_access allow' line lets through CONNECT tunnels and plain HTTP requests alike.",
              "# Squid's default rules before it still apply (deny CONNECT to ports outside SSL_ports):",
              "# add the ports this allowlist names there."]
    if options.ssl_bump:
        lines += ["#",
                  "# --ssl-bump: the TLS ClientHello's SNI must be allowed too, or the tunnel is closed.",
                  "# Allowed tunnels are never decrypted (peek, then splice or terminate); a CONNECT that",
                  "# http_access denies gets Squid's 403 inside TLS, with the port's certificate.",
                  "# Needs Squid with OpenSSL (Debian: squid-openssl) and an ssl-bump port, e.g.:",
                  "#   http_port 3128 ssl-bump tls-cert=/etc/squid/bump.pem generate-host-certificates=off",
                  "# Its 'ssl_bump terminate all' ends the ssl_bump rules: put your own before the include."]
    lines += notes_block(notes, "squid")
    if not acls:
        lines += ["#", "# The allowlist is empty: nothing is allowed here."]
    lines += ["", *acls, "", *access]
    if options.ssl_bump:
        lines += ["", f"acl {PREFIX}_step1 at_step SslBump1", f"ssl_bump peek {PREFIX}_step1", *bump,
                  "ssl_bump terminate all"]
    return Export("\n".join(lines) + "\n", notes)
