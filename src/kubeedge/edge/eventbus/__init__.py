"""EventBus: edgecore's bridge between MQTT (devices, mappers, apps) and the beehive bus.

``eventbus`` is the beehive module (name ``eventbus``, group ``bus``); ``client`` its MQTT client on trio;
``broker`` the internal broker of mqttMode 0/1 and ``sessions`` that broker's sans-io state. The wire
format lives in :mod:`kubeedge.proto.mqtt`.
"""
