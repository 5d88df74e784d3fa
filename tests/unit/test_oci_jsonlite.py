"""jsonlite against the json package: the same text out, the same values in."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrunsc.oci import jsonlite

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(values)
def test_dumps_is_jsons(value):
    assert jsonlite.dumps(value) == json.dumps(value)
    assert jsonlite.dumps(value, indent=2) == json.dumps(value, indent=2)


@settings(max_examples=300, deadline=None)
@given(values, st.sampled_from(["", " ", "\n", " \t\r\n "]))
def test_loads_is_jsons(value, space):
    for text in (json.dumps(value), json.dumps(value, indent=1)):
        text = space + text + space
        assert jsonlite.loads(text) == json.loads(text)
        assert jsonlite.loads(text.encode()) == json.loads(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_bad_documents_raise_valueerror_like_json(text):
    try:
        want = json.loads(text)
    except ValueError:
        want = ValueError
    if want is not ValueError and "NaN" not in text and "Infinity" not in text:
        assert jsonlite.loads(text) == want
    elif want is ValueError:
        with pytest.raises(ValueError):
            jsonlite.loads(text)


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', "[1,]", "NaN", "[-Infinity]", '"\\x"'])
def test_not_documents(text):
    with pytest.raises(ValueError):
        jsonlite.loads(text)


def test_unserializable_is_typeerror():
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonlite.dumps({"a": {1, 2}})


def test_in_a_fresh_interpreter():
    """Where json was never imported (the quick commands): the C codec
    does the work without json, and a bad document still gets json's error
    (_json reports errors through json.decoder, loaded only then)."""
    import os
    import subprocess
    import sys
    import pyrunsc
    root = os.path.dirname(os.path.dirname(os.path.abspath(pyrunsc.__file__)))
    code = (f"import sys; sys.path.insert(0, {root!r})\n"
            "from pyrunsc.oci import jsonlite\n"
            "assert jsonlite.loads(jsonlite.dumps({'a': [1, 'x']})) == {'a': [1, 'x']}\n"
            "print('json' in sys.modules)\n"
            "try:\n    jsonlite.loads('{not json')\n"
            "except ValueError as e:\n    print(type(e).__name__, e)\n")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("False\nJSONDecodeError Expecting property name enclosed in double quotes: "
                        "line 1 column 2 (char 1)\n")
