"""Wire model and codecs, sans-io: no sockets, no trio, no clock.

Everything here takes bytes or plain values (and an explicit ``now`` where time
matters) and returns bytes or values, so it can be tested and fuzzed at
microsecond speed.

Modules: ``message`` (Header/Route/Message), ``vocab`` (operation, resource type,
group and module names as StrEnums), ``resource`` (resource keys and CloudHub's
``node/<node>/`` prefix rule), ``codec`` (upstream-exact JSON, ``CodecError``,
case-lenient readers of untagged Go structs), ``delivery`` (per-node ack/resend
bookkeeping for cloud-to-edge messages).
"""
