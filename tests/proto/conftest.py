"""Hypothesis strategies shared by the proto tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kubeedge.proto.message import Header, Message, Route

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def json_values(max_leaves: int = 20, max_text: int = 30) -> st.SearchStrategy[Any]:
    """Arbitrary JSON values (nesting stays far below the codec's depth bound)."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.text(max_size=max_text)
        | st.floats(allow_nan=False, allow_infinity=False)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


headers = st.builds(
    Header,
    msg_id=st.text(min_size=1, max_size=40),
    timestamp=INT64,
    parent_msg_id=st.text(max_size=40),
    resource_version=st.text(max_size=20),
    message_type=st.text(max_size=10),
)
routes = st.builds(
    Route,
    source=st.text(max_size=20),
    group=st.text(max_size=20),
    operation=st.text(max_size=20),
    resource=st.text(max_size=60),
    destination=st.text(max_size=20),
)
messages = st.builds(Message, header=headers, route=routes, content=json_values())
