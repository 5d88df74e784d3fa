"""JSON for the runtime's quick commands, without importing the json
package: its decoder and encoder compile regular expressions at import,
which brings in re and enum, about 10 ms of a 20 ms command. The work is
done by the C codec json itself uses (_json); only its set-up is ours.
Same results as json.loads and json.dumps (ensure_ascii, no NaN from
input), for the documents the runtime reads and writes."""
from __future__ import annotations

try:
    import _json
except ImportError:   # an interpreter without the C codec: the json package
    _json = None


def _no_constant(name: str):
    raise ValueError(f"JSON: {name} is not a number")


class _ScanContext:
    """What _json's scanner reads from a json.JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_no_constant)
    memo: dict = {}


def _unserializable(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


_WHITESPACE = " \t\n\r"

if _json is not None:
    _scan = _json.make_scanner(_ScanContext)
    # (markers for cycle checks: none, our documents are trees; default,
    # string encoder, indent, key and item separators, sort_keys, skipkeys,
    # allow_nan)
    _encode = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None,
                                 ": ", ", ", False, False, True)

    def loads(text: str | bytes):
        """A JSON document; ValueError (json's own) if it is not one."""
        if isinstance(text, (bytes, bytearray)):
            text = text.decode()
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            obj, end = _scan(text, start)
            if not text[end:].strip(_WHITESPACE):
                return obj
        except (StopIteration, SystemError):
            pass   # (_json raises its errors through json.decoder, if that is loaded: else SystemError)
        import json   # the error path: json says what is wrong, as json.loads would
        json.loads(text)
        raise ValueError("not a JSON document")   # not reached: json refuses it too

    def _compact(obj) -> str:
        return "".join(_encode(obj, 0))
else:
    from json import dumps as _dumps, loads  # noqa: F401

    def _compact(obj) -> str:
        return _dumps(obj)


def dumps(obj, indent: int | None = None) -> str:
    """obj as JSON: one line, or indented by indent spaces a level."""
    if indent is None:
        return _compact(obj)
    return _indented(obj, " " * indent, "")


def _indented(obj, step: str, here: str) -> str:
    inner = here + step
    if isinstance(obj, dict) and obj:
        items = (f"{inner}{_compact(str(k))}: {_indented(v, step, inner)}" for k, v in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{here}}}"
    if isinstance(obj, (list, tuple)) and obj:
        return "[\n" + ",\n".join(inner + _indented(v, step, inner) for v in obj) + f"\n{here}]"
    return _compact(obj)


def read(path: str):
    """The JSON document in a file (OSError, ValueError)."""
    with open(path, "rb") as f:
        return loads(f.read())
