"""dist_tool.filters: containerd's syntax, matching semantics, the dict adaptor."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dist_tool import filters
from dist_tool.errors import InvalidArgument

IMAGE = {
    "name": "docker.io/library/busybox:latest",
    "target": {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": "sha256:" + "a" * 64,
        "size": 1234,
    },
    "complete": True,
    "unpackedSize": None,
    "platforms": ["linux/amd64", "linux/arm64"],
    "labels": {"app": "web", "com.example/app": "shop", "com.example.tier": "front", "Env": "p"},
}
ADAPTOR = filters.adaptor_for(IMAGE)

MATCHES = [
    ("no-args", [], True),
    ("empty-arg", [""], True),
    ("name-eq", ["name==docker.io/library/busybox:latest"], True),
    ("name-eq-other", ["name==docker.io/library/alpine:latest"], False),
    ("name-ne", ["name!=docker.io/library/alpine:latest"], True),
    ("name-ne-same", ["name!=docker.io/library/busybox:latest"], False),
    ("name-regex", ["name~=busy"], True),
    ("name-regex-anchored", ["name~=^busy"], False),
    ("name-regex-miss", ["name~=alpine"], False),
    ("label-quoted-key", ['labels."app"==web'], True),
    ("label-present", ["labels.app"], True),
    ("label-absent", ["labels.db"], False),
    ("label-slash-key", ['labels."com.example/app"==shop'], True),
    ("label-dotted-bare", ["labels.com.example.tier==front"], True),
    ("label-dotted-quoted", ['labels."com.example.tier"==front'], True),
    ("label-key-exact-case", ["labels.env"], False),
    ("label-key-case", ["labels.Env==p"], True),
    ("label-ne-absent", ["labels.db!=x"], True),
    ("label-eq-absent-empty", ['labels.db==""'], False),
    ("mediatype-lower", ["target.mediatype~=index"], True),
    ("mediatype-camel", ["target.mediaType~=index"], True),
    ("field-upper", ["NAME~=busy"], True),
    ("int-leaf", ["target.size==1234"], True),
    ("bool-leaf", ["complete==true"], True),
    ("none-leaf", ["unpackedSize"], False),
    ("list-leaf", ["platforms~=linux/arm64"], True),
    ("mapping-leaf", ["labels"], False),
    ("too-deep", ["name.x"], False),
    ("and-both", ["name~=busy,labels.app==web"], True),
    ("and-one", ["name~=busy,labels.app==db"], False),
    ("or-one", ["name~=alpine", "labels.app==web"], True),
    ("or-none", ["name~=alpine", "labels.app==db"], False),
    ("spaces", [" name ~= busy , labels . app == web "], True),
    ("bare-value-spaces", ["labels.app==we b"], False),
    ("quoted-comma", ['name~="busy,box"'], False),
    ("slash-quoted-regex", ["name~=/bus{1,2}y/"], True),
    ("pipe-quoted-regex", ["name~=|library/busy|"], True),
    ("escaped-delimiter", [r"name~=/library\/busy/"], True),
    ("regex-escape-kept", [r'target.digest~="^sha256:a\w+$"'], True),
    ("quote-escapes", [r'labels."com.example/app"=="sh\op"'], False),
    ("value-with-equals", ["name==a=b"], False),
]


@pytest.mark.parametrize(
    ("args", "expected"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES]
)
def test_match(args: list[str], expected: bool):
    assert filters.parse(args).match(ADAPTOR) is expected


REJECTED = [
    ("single-equals", "name=foo", "expected ==, != or ~="),
    ("bad-operator", "name=~foo", "expected ==, != or ~="),
    ("missing-value", "name==", "expected a value"),
    ("missing-value-comma", "name==,labels.a", "expected a value"),
    ("trailing-comma", "name==a,", "expected a field name"),
    ("leading-comma", ",name", "expected a field name"),
    ("double-comma", "name,,labels", "expected a field name"),
    ("empty-component", "labels..app", "expected a field name"),
    ("trailing-dot", "labels.", "expected a field name"),
    ("slash-in-field", "labels.containerd.io/gc==x", "unexpected '/'"),
    ("unterminated-field", 'labels."app==web', "unterminated quoted string"),
    ("unterminated-value", 'name=="busy', "unterminated quoted string"),
    ("unterminated-regex", "name~=/busy", "unterminated quoted string"),
    ("junk-after-quoted", 'name=="a"b', "expected ',' or the end"),
    ("bad-regex", "name~=(", "bad regular expression"),
    ("bad-regex-quoted", 'name~="[a-"', "bad regular expression"),
    ("huge-repeat", "name~=a{99999999999}", "bad regular expression"),
    ("operator-only", "==x", "expected a field name"),
]


@pytest.mark.parametrize(("arg", "why"), [r[1:] for r in REJECTED], ids=[r[0] for r in REJECTED])
def test_parse_rejects(arg: str, why: str):
    with pytest.raises(InvalidArgument) as info:
        filters.parse(["name==ok", arg])
    err = info.value
    assert (err.what, err.which) == ("filter", arg)
    assert why in err.why
    assert str(err).startswith(f"filter {arg}: ")


def test_error_names_column():
    with pytest.raises(InvalidArgument, match="at column 5"):
        filters.parse(["name=foo"])


def test_adaptor_missing_and_non_mapping():
    adapt = filters.adaptor_for({"a": "x", "labels": {"k": "v"}, 3: "int-key"})
    assert adapt(("b",)) == ("", False)
    assert adapt(("a", "b")) == ("", False)
    assert adapt(("labels", "K")) == ("", False)
    assert adapt(("LABELS", "k")) == ("v", True)
    assert adapt(("a",)) == ("x", True)


# --- properties ---------------------------------------------------------------


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_keys = st.text(min_size=1, max_size=12)
_values = st.text(max_size=12)


@given(st.lists(st.text(max_size=40), max_size=3))
def test_parse_raises_only_invalid_argument(args: list[str]):
    try:
        f = filters.parse(args)
    except InvalidArgument as e:
        assert e.what == "filter" and e.which in args
    else:
        f.match(ADAPTOR)


@given(st.dictionaries(_keys, _values, max_size=4), _keys, _values)
def test_quoted_label_conditions_agree_with_dict(labels: dict[str, str], key: str, value: str):
    adapt = filters.adaptor_for({"labels": labels})
    path = f"labels.{quote(key)}"
    present = key in labels
    assert filters.parse([path]).match(adapt) is present
    assert filters.parse([f"{path}=={quote(value)}"]).match(adapt) is (
        present and labels[key] == value
    )
    assert filters.parse([f"{path}!={quote(value)}"]).match(adapt) is (labels.get(key, "") != value)


@given(
    st.lists(
        st.tuples(st.sampled_from(["name", "labels.app"]), st.sampled_from(["==", "!="]), _values),
        min_size=1,
        max_size=3,
    ),
    st.text(max_size=8),
    st.text(max_size=8),
)
def test_conjunction_is_all(conditions, name: str, app: str):
    adapt = filters.adaptor_for({"name": name, "labels": {"app": app}})
    arg = ",".join(f"{path}{op}{quote(value)}" for path, op, value in conditions)
    fields = {"name": name, "labels.app": app}
    expected = all((fields[p] == v) is (op == "==") for p, op, v in conditions)
    assert filters.parse([arg]).match(adapt) is expected


@given(st.sampled_from(["==", "!=", "~="]), st.text(max_size=30))
def test_any_value_text_raises_only_invalid_argument(operator: str, value: str):
    arg = f"name{operator}{value}"
    try:
        f = filters.parse([arg])
    except InvalidArgument as e:
        assert e.which == arg
    else:
        f.match(ADAPTOR)
