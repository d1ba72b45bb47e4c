"""Edged: runs the node's pods on a container runtime and reports pod and node status.

Layout: ``podspec`` (validated pod model), ``quantity``, ``envvars``, ``volumes`` (payloads and the atomic
writer), ``decide`` (what to start/kill), ``backoff``, ``probes``, ``podstatus``, ``gc``, ``nodestatus``,
``static`` (manifest pods) are sans-io; ``runtime`` is the :class:`~kubeedge.edge.edged.runtime.ContainerRuntime`
protocol, ``dockerruntime`` its Docker implementation and ``manager`` the trio shell tying them together.
"""
