"""CloudHub: the cloud end of the cloud-edge link.

:mod:`.hub` serves edges over the websocket (mTLS, sessions, liveness); :mod:`.delivery` is the sans-io
per-node reliable delivery core it drives; :mod:`.certserver` is the HTTPS certificate service and
:mod:`.token` keeps the join token fresh. Never imports ``kubeedge.edge``.
"""
