"""edgecore's modules, one sub-package each (edgehub, metamanager, edged, eventbus, devicetwin, servicebus).

Never imports ``kubeedge.cloud``.
"""
