"""On-device status: the board edge modules publish on, its providers, and the read-only unix-socket API.

See :mod:`kubeedge.edge.status.board` (how modules publish), :mod:`kubeedge.edge.status.providers` (collectors
for data edgecore already has) and :mod:`kubeedge.edge.status.server` (the API). The schema lives in
:mod:`kubeedge.kit.status` so that ``edgecore tui`` can read it without importing edge code.
"""
