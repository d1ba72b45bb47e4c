"""DeviceTwin: device membership, twins and states on the edge node (beehive module ``twin``).

Modules: :mod:`.twins` (sans-io rules and payloads), :mod:`.topics` (MQTT topic names),
:mod:`.store` (upstream's device tables plus the durable report outbox), :mod:`.module` (the trio module).
"""
