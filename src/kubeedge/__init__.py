"""kubeedge-py: KubeEdge's cloudcore, edgecore and keadm rebuilt in Python on trio.

The package mirrors upstream's architecture: ``proto`` (wire model, sans-io),
``kit`` (config, logging, TLS, backoff, limits, the module runtime),
``apiserver`` (embedded Kubernetes-compatible control plane), ``cloud.<module>``,
``edge.<module>``, ``tui`` and ``cli``. ``cloud`` and ``edge`` never import each
other; ``proto`` imports no I/O library. import-linter enforces both in CI.
"""

__version__ = "0.1.0.dev0"

#: The upstream KubeEdge release whose wire format and config keys this release follows.
UPSTREAM_VERSION = "v1.23.1"
