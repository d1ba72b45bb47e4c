"""ServiceBus: HTTP calls from the cloud to edge apps, and from edge apps to the cloud (beehive module ``servicebus``).

Modules: :mod:`.http` (bounded h11 exchanges), :mod:`.module` (the trio module).
"""
