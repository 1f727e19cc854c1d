"""A Docker lab for egress-tui's integration tests: a real engine, locally
built images and a closed network.

Modules:
    engine -- ``ensure_docker()``: install docker.io if needed, start dockerd, return a client
    images -- ``ensure_base_image()`` (debootstrap + ``docker import``),
              ``ensure_sink_image()`` (base + aioquic from PyPI, installed on the host),
              ``ensure_target_image()`` (base + Claude Code's native binary from npm),
              ``ensure_proxy_image()`` (base + squid, dante-server, OpenSSH),
              ``ensure_tools_image()`` (base + nodejs, git)
    lab    -- ``DockerLab``: an ``--internal`` network with a sinkhole DNS, a sink that
              accepts on every lab address, and a target container with no way out;
              ``add_proxies()`` adds a confined HTTP/SOCKS proxy container,
              ``add_git_server()`` a confined ``git daemon``
    fixtures -- pytest fixtures ``docker_client``, ``lab_images``, ``docker_lab``,
              ``proxy_image``, ``docker_proxy_lab``, ``tools_image``

Nothing is pulled from a container registry: every image is built here from
Debian's mirror (read from the apt sources), PyPI and npm.  See README.md.
"""
