"""Real container engines besides Docker for the tests: Podman (its API socket) and
containerd (``ctr``), with containers in network namespaces that lead nowhere but the
network lab's sink and sinkhole DNS. See README.md beside this file."""
