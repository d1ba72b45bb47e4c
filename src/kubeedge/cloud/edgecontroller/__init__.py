"""EdgeController: pushes pods, configmaps, secrets and nodes to edge nodes and applies what edges report.

``locations`` (which node needs which object), ``downstream`` (message builders), ``upstream`` (handling of
edge requests and the node's access rules), ``lifecycle`` (node Ready/Unknown bookkeeping) and ``controller``
(the beehive module).
"""
