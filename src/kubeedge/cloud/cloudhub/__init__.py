"""CloudHub: the cloud end of the cloud-edge websocket link.

:mod:`.hub` serves edges (mTLS, sessions, liveness); :mod:`.delivery` is the
sans-io per-node reliable delivery core it drives.
"""
