"""SyncController: ObjectSync/ClusterObjectSync bookkeeping and the periodic resend of what edges missed.

``index`` holds the sans-io record index; ``controller`` the beehive module and the store that writes records.
"""
