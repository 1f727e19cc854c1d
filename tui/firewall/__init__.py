"""An egress firewall for one network namespace: iptables + ipset, IPv4 and IPv6.

Applied from the host into the container's namespace (nsenter), so the image needs no
NET_ADMIN, no iptables, no sudo, and nothing inside the container can undo it.

What it fixes in the hand-made script it replaces (see the README):
- own chain (EGRESS-TUI) and own sets only, hooked into OUTPUT with one jump: it never
  flushes tables, so Docker's embedded-DNS NAT rules keep working;
- IPv6 too (ip6tables, ``hash:net family inet6``);
- atomic: sets are filled aside and swapped in, each family's rules load in one
  ``iptables-restore`` transaction, and any failure puts back exactly what was there;
- a name that does not resolve is reported, not fatal;
- DNS only to the container's configured resolvers, not to anything on port 53;
- the sets keep up with rotating addresses: DNS answers for allowed names seen while
  capturing are added with a timeout taken from their TTL (see ``SetUpdater``).

Nothing here imports Textual.
"""
