"""Wire model and codecs, sans-io: no sockets, no trio, no clock.

Everything here takes bytes or plain values (and an explicit ``now`` where time
matters) and returns bytes or values, so it can be tested and fuzzed at
microsecond speed.
"""
