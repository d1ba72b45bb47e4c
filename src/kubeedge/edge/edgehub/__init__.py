"""EdgeHub: the edge end of the cloud-edge websocket link.

:mod:`.hub` holds the connection (dial, keepalive, liveness, reconnect, acks);
:mod:`.pacing` is the sans-io token bucket and reconnect backoff it uses.
"""
