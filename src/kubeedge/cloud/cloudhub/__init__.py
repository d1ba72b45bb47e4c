"""CloudHub: the cloud end of the cloud-edge link (websocket hub, certificate service, join tokens).

Never imports ``kubeedge.edge``.
"""
