"""A tiny, fully isolated network lab for end-to-end capture tests.

Two network namespaces ("client" and "server") joined by a veth pair; the
server namespace owns whole benchmark/ULA ranges and runs a sinkhole DNS
responder plus TLS, HTTP and QUIC sinks.  The client namespace has no default
route, so nothing a test does can leave the machine.

Modules:
    netlab  -- the ``Lab`` context manager (namespaces, veth, capture, impairments)
    dnsd    -- stdlib-only sinkhole DNS responder (UDP+TCP 53)
    sink    -- TLS/HTTP/QUIC sinks, started by ``Lab`` as ``python -m tests.lab.sink``
    record_demo -- records ``tui/data/demo.pcap`` with the lab
"""
