"""Router (cloudcore module ``router``, off by default): Rules and RuleEndpoints turned into message routes.

:mod:`.rules` is the sans-io table and path matching; :mod:`.module` the beehive module with its REST
listener and its watches of ``rules.kubeedge.io/v1``.
"""
