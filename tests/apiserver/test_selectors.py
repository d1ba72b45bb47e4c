"""Label and field selector parsing and matching (pure, with Hypothesis)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.apiserver import selectors

keys = st.from_regex(r"\A[a-z]([a-z0-9-]{0,8}[a-z0-9])?\Z")
values = st.from_regex(r"\A([a-z0-9]([a-z0-9._-]{0,8}[a-z0-9])?)?\Z")
label_maps = st.dictionaries(keys, values, max_size=5)


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app in (web, db)", {"app": "db"}, True),
        ("app notin (web,db)", {"app": "db"}, False),
        ("app notin (web,db)", {}, True),
        ("app", {"app": ""}, True),
        ("!app", {"app": ""}, False),
        ("tier,app=web", {"app": "web"}, False),
        ("count>3", {"count": "4"}, True),
        ("count<3", {"count": "x"}, False),
        ("", {"any": "thing"}, True),
    ],
)
def test_label_examples(text: str, labels: dict[str, str], expected: bool) -> None:
    assert selectors.parse_labels(text).matches(labels) is expected


@pytest.mark.parametrize("text", ["app=", "=web", "app in (a", "a b", "app>x", "Bad Key=1", "a,,b"])
def test_label_errors_name_the_term(text: str) -> None:
    if text == "app=":  # an empty value is valid
        assert selectors.parse_labels(text).matches({"app": ""})
        return
    with pytest.raises(selectors.SelectorError):
        selectors.parse_labels(text)


@given(label_maps)
def test_equality_of_own_labels_always_matches(labels: dict[str, str]) -> None:
    text = ",".join(f"{k}={v}" for k, v in labels.items())
    assert selectors.parse_labels(text).matches(labels)


@given(label_maps, keys, values)
def test_negation_pairs_are_complementary(labels: dict[str, str], key: str, value: str) -> None:
    eq = selectors.parse_labels(f"{key}={value}").matches(labels)
    ne = selectors.parse_labels(f"{key}!={value}").matches(labels)
    assert eq != ne
    has = selectors.parse_labels(key).matches(labels)
    hasnt = selectors.parse_labels(f"!{key}").matches(labels)
    assert has != hasnt
    in_ = selectors.parse_labels(f"{key} in ({value})").matches(labels)
    notin = selectors.parse_labels(f"{key} notin ({value})").matches(labels)
    assert in_ == eq
    assert notin == ne


def test_field_selectors() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    assert selectors.parse_fields("spec.nodeName=n1,status.phase!=Failed").matches(pod)
    assert not selectors.parse_fields("spec.nodeName==n2").matches(pod)
    assert selectors.parse_fields("spec.nodeName=").matches({"metadata": {}, "spec": {}})
    assert selectors.parse_fields(r"metadata.name=a\,b").requirements[0].value == "a,b"
    assert selectors.parse_fields("").fields() == set()
    with pytest.raises(selectors.SelectorError):
        selectors.parse_fields("spec.nodeName")


@given(st.text(alphabet="abc=!,()\\ .", max_size=30))
def test_parsers_never_crash_unexpectedly(text: str) -> None:
    for parse in (selectors.parse_labels, selectors.parse_fields):
        with contextlib.suppress(selectors.SelectorError):
            parse(text)
