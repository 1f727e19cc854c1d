"""Live plumbing: network namespaces, container engines, capture sources and threads."""
