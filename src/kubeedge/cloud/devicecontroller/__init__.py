"""DeviceController: Device and DeviceModel objects to edge nodes, edge twin and state reports to Device status.

Modules: :mod:`.status` (sans-io report and membership rules), :mod:`.controller` (the beehive module).
"""
