"""JSON-Schema-like dicts inferred from type annotations, for tool metadata.

Worked out once at decoration. Unknown annotations become ``{}`` (anything) rather than an
error: a schema is documentation for a model filling in arguments, not a validator.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

_SCALARS: dict[object, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    bytes: {"type": "string", "contentEncoding": "base64"},
    type(None): {"type": "null"},
    None: {"type": "null"},
}
_ARRAYS = (list, set, frozenset, tuple, typing.Sequence, typing.Iterable)


def schema_of(annotation: object) -> dict[str, Any]:
    """The schema of one annotation."""
    if annotation is inspect.Parameter.empty or annotation is typing.Any:
        return {}
    scalar = _SCALARS.get(annotation) if _hashable(annotation) else None
    if scalar is not None:
        return dict(scalar)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [schema_of(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin is typing.Annotated:
        return schema_of(args[0])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        if args:
            items = [schema_of(a) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items)}
        return {"type": "array"}
    if origin in _ARRAYS or annotation in _ARRAYS:
        return {"type": "array", "items": schema_of(args[0])} if args else {"type": "array"}
    if origin in (dict, typing.Mapping) or annotation is dict:
        if len(args) == 2:
            return {"type": "object", "additionalProperties": schema_of(args[1])}
        return {"type": "object"}
    return _schema_of_class(annotation)


def _hashable(annotation: object) -> bool:
    try:
        hash(annotation)
    except TypeError:
        return False
    return True


def _schema_of_class(annotation: object) -> dict[str, Any]:
    for method in ("model_json_schema", "schema"):
        produce = getattr(annotation, method, None)
        if callable(produce) and isinstance(annotation, type):
            try:
                result = produce()
            except Exception:
                continue
            if isinstance(result, dict):
                return result
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        hints = _hints(annotation)
        fields = dataclasses.fields(annotation)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        props = {f.name: schema_of(hints.get(f.name, f.type)) for f in fields}
        return _object(annotation.__name__, props, required)
    if typing.is_typeddict(annotation):
        hints = _hints(annotation)
        required_keys: frozenset[str] = getattr(annotation, "__required_keys__", frozenset())
        props = {k: schema_of(v) for k, v in hints.items()}
        name = getattr(annotation, "__name__", "object")
        return _object(name, props, [k for k in hints if k in required_keys])
    return {}


def _object(title: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"title": title, "type": "object", "properties": props, "required": required}


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:
        return dict(getattr(obj, "__annotations__", {}))


def input_schema(fn: Callable[..., Any], hidden: frozenset[str]) -> dict[str, Any]:
    """An object schema of ``fn``'s parameters, leaving out ``hidden`` (context-injected) ones."""
    hints = _hints(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.name in hidden or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        prop = schema_of(hints.get(param.name, param.annotation))
        if param.default is not param.empty:
            if _plain(param.default):
                prop["default"] = param.default
        else:
            required.append(param.name)
        props[param.name] = prop
    return {"type": "object", "properties": props, "required": required}


def output_schema(fn: Callable[..., Any], generator: bool) -> dict[str, Any]:
    """The schema of ``fn``'s return type, or of the items a generator yields."""
    annotation = _hints(fn).get("return", inspect.Parameter.empty)
    if generator and annotation is not inspect.Parameter.empty:
        args = typing.get_args(annotation)
        annotation = args[0] if args else inspect.Parameter.empty
    return schema_of(annotation)


def _plain(value: object) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False
