"""cloudcore's modules, one sub-package each (cloudhub, edgecontroller, devicecontroller, synccontroller).

Never imports ``kubeedge.edge``.
"""
