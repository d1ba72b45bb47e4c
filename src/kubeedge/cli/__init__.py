"""Console entry points: ``cloudcore``, ``edgecore`` and ``keadm``."""
