"""JSON-Schema-like dicts inferred from type annotations, for tool metadata.

Worked out once at decoration. Unknown annotations become ``{}`` (anything) rather than an
error: a schema is documentation for a model filling in arguments, not a validator.

The shapes follow pygents 0.7.0, because programs compare schemas with ``==``: no schema
(None) for a tool without parameters or without a return value, ``Optional[T]`` as ``T``'s
schema alone, ``"required"`` only when something is, and no ``"default"`` keys.
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
_NONE = type(None)
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
        members = [a for a in args if a is not _NONE]
        if len(members) == 1:  # Optional[T]: T's schema alone, no null branch
            return schema_of(members[0])
        return {"anyOf": [{} if a is _NONE else schema_of(a) for a in args]}
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


def _optional(annotation: object) -> bool:
    """Whether ``annotation`` is a union with None among its members (``T | None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _optional(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return _NONE in typing.get_args(annotation)
    return False


def input_schema(fn: Callable[..., Any], hidden: frozenset[str]) -> dict[str, Any] | None:
    """An object schema of ``fn``'s parameters, or None when there is none to describe.

    ``self``/``cls``, ``*args``, ``**kwargs`` and ``hidden`` (context-injected) parameters
    are left out. A parameter is required when it has no default and is not Optional.
    """
    hints = _hints(fn)
    props: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.name in hidden or param.name in ("self", "cls"):
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(param.name, param.annotation)
        props[param.name] = schema_of(annotation)
        if param.default is param.empty and not _optional(annotation):
            required.append(param.name)
    if not props:
        return None
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


def output_schema(fn: Callable[..., Any], generator: bool) -> dict[str, Any] | None:
    """The schema of ``fn``'s return type, or of the items a generator yields.

    None when there is no annotation, or it is ``None`` (nothing comes back).
    """
    annotation = _hints(fn).get("return", inspect.Parameter.empty)
    if generator and annotation is not inspect.Parameter.empty:
        args = typing.get_args(annotation)
        annotation = args[0] if args else inspect.Parameter.empty
    if annotation is inspect.Parameter.empty or annotation is None or annotation is _NONE:
        return None
    return schema_of(annotation)
