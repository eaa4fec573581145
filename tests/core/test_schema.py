"""Input and output schemas inferred from a tool's annotations."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Optional, TypedDict

from pygents import ContextPool, ContextQueue, tool


def _input_property(annotation: Any) -> Any:
    async def probe(value: Any) -> None:
        pass

    probe.__annotations__ = {"value": annotation, "return": None}
    made = tool()(probe)
    schema = made.metadata.input_schema
    assert schema is not None
    assert schema is not None
    return schema["properties"]["value"]


def _output(annotation: Any) -> Any:
    async def probe() -> Any:
        return None

    probe.__annotations__ = {"return": annotation}
    made = tool()(probe)
    return made.metadata.output_schema


def test_input_schema_is_object_with_properties_and_required() -> None:
    @tool()
    async def search(query: str, limit: int) -> None:
        pass

    schema = search.metadata.input_schema

    assert schema is not None
    assert schema["type"] == "object"
    assert schema["properties"] == {
        "query": {"type": "string"},
        "limit": {"type": "integer"},
    }
    assert schema["required"] == ["query", "limit"]


def test_parameter_with_default_is_not_required() -> None:
    @tool()
    async def search(query: str, limit: int = 10) -> None:
        pass

    schema = search.metadata.input_schema

    assert schema is not None
    assert set(schema["properties"]) == {"query", "limit"}
    assert schema["required"] == ["query"]


def test_tool_without_parameters_has_no_input_schema() -> None:
    @tool()
    async def nothing() -> None:
        pass

    assert nothing.metadata.input_schema is None


def test_context_parameters_are_left_out_of_input_schema() -> None:
    @tool()
    async def reader(
        query: str,
        queue: ContextQueue[Any],
        pool: ContextPool[Any] | None = None,
    ) -> None:
        pass

    schema = reader.metadata.input_schema

    assert schema is not None
    assert set(schema["properties"]) == {"query"}
    assert schema["required"] == ["query"]


def test_int_schema() -> None:
    assert _input_property(int) == {"type": "integer"}


def test_float_schema() -> None:
    assert _input_property(float) == {"type": "number"}


def test_str_schema() -> None:
    assert _input_property(str) == {"type": "string"}


def test_bool_schema() -> None:
    assert _input_property(bool) == {"type": "boolean"}


def test_none_schema() -> None:
    assert _input_property(None) == {"type": "null"}


def test_list_schema_has_item_schema() -> None:
    assert _input_property(list[int]) == {"type": "array", "items": {"type": "integer"}}


def test_dict_schema_is_a_plain_object() -> None:
    assert _input_property(dict[str, float]) == {"type": "object"}


def test_tuple_schema_is_array() -> None:
    assert _input_property(tuple[int, str])["type"] == "array"


def test_union_schema_lists_each_member() -> None:
    schema = _input_property(int | str)
    assert {"type": "integer"} in schema["anyOf"]
    assert {"type": "string"} in schema["anyOf"]


def test_optional_schema_is_the_member_schema_alone() -> None:
    assert _input_property(Optional[int]) == {"type": "integer"}  # noqa: UP045


def test_literal_schema_lists_values() -> None:
    schema = _input_property(Literal["a", "b"])
    assert schema["enum"] == ["a", "b"]


def test_any_schema_accepts_everything() -> None:
    assert "type" not in _input_property(Any)


def test_dataclass_schema_is_object_with_fields() -> None:
    @dataclass
    class Point:
        x: int
        y: float = 0.0

    schema = _input_property(Point)
    assert schema["type"] == "object"
    assert schema["properties"] == {"x": {"type": "integer"}, "y": {"type": "number"}}
    assert schema["required"] == ["x"]


def test_typed_dict_schema_is_object_with_keys() -> None:
    class Movie(TypedDict):
        title: str
        year: int

    schema = _input_property(Movie)
    assert schema["type"] == "object"
    assert schema["properties"] == {"title": {"type": "string"}, "year": {"type": "integer"}}
    assert set(schema["required"]) == {"title", "year"}


def test_class_with_model_json_schema_contributes_its_schema() -> None:
    custom = {"type": "object", "title": "Model", "properties": {"a": {"type": "integer"}}}

    class Model:
        @classmethod
        def model_json_schema(cls) -> dict[str, Any]:
            return custom

    assert _input_property(Model) == custom


def test_class_with_schema_method_contributes_its_schema() -> None:
    custom = {"type": "object", "title": "Legacy"}

    class Legacy:
        @classmethod
        def schema(cls) -> dict[str, Any]:
            return custom

    assert _input_property(Legacy) == custom


def test_duck_typed_model_as_output_schema() -> None:
    custom = {"type": "object", "title": "Result"}

    class Result:
        @classmethod
        def model_json_schema(cls) -> dict[str, Any]:
            return custom

    assert _output(Result) == custom


def test_output_schema_from_return_annotation() -> None:
    @tool()
    async def count() -> int:
        return 1

    assert count.metadata.output_schema == {"type": "integer"}


def test_output_schema_of_list_return() -> None:
    assert _output(list[str]) == {"type": "array", "items": {"type": "string"}}


def test_generator_output_schema_is_yielded_item_type() -> None:
    @tool()
    async def stream() -> AsyncIterator[str]:
        yield "x"

    assert stream.metadata.output_schema == {"type": "string"}


def test_nested_container_schema() -> None:
    assert _input_property(list[dict[str, int]]) == {
        "type": "array",
        "items": {"type": "object"},
    }
