"""Wire model and codecs, sans-io: no sockets, no trio, no clock.

Everything here takes bytes or plain values (and an explicit ``now`` where time
matters) and returns bytes or values, so it can be tested and fuzzed at
microsecond speed.

Modules: ``message`` (Header/Route/Message), ``vocab`` (operation, resource type,
group and module names as StrEnums), ``resource`` (resource keys and CloudHub's
``node/<node>/`` prefix rule), ``codec`` (upstream-exact JSON, ``CodecError``,
case-lenient readers of untagged Go structs) and ``mqtt`` (MQTT 3.1.1 packets). The per-node
cloud-to-edge delivery bookkeeping is sans-io too and lives beside its only user,
``kubeedge.cloud.cloudhub.delivery``.
"""
