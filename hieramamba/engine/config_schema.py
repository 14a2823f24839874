"""Check a composed run config against `hieramamba/conf/run_config.schema.yaml` (JSON schema).

One `ConfigError` per bad config, naming the dotted key, the value (with its type, since `"no"` and
`false` print alike), what the schema allows there and, when known, which source set it (scale
table, ablation file, command line). Types are strict: a YAML/hydra string is never read as a
boolean or a number, `true` is not an integer and neither is `2.0`, NaN and infinity are not
numbers (except where the schema allows `.inf` by name).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hieramamba.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "conf" / "run_config.schema.yaml"


@functools.lru_cache(maxsize=1)
def _validator():
    from jsonschema.validators import Draft202012Validator, extend

    def is_integer(_checker, value: Any) -> bool:
        # jsonschema's default accepts 2.0; range(), tensor shapes and seeds do not
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(_checker, value: Any) -> bool:
        # NaN passes every comparison-based bound (NaN <= 0 is False), so refuse non-finite values by
        # type; the one key that takes infinity (eval.length_bins) says so with a `const`
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    checker = Draft202012Validator.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    strict = extend(Draft202012Validator, type_checker=checker)
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    strict.check_schema(schema)
    return strict(schema)


def schema() -> dict:
    """The parsed schema (for tests and docs)."""
    return _validator().schema


# ---------------------------------------------------------------------------- messages


def _bounds(node: Mapping[str, Any]) -> str:
    parts = []
    for key, op in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            parts.append(f"{op} {node[key]:g}" if isinstance(node[key], float) else f"{op} {node[key]}")
    return " and ".join(parts)


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "boolean": "a boolean (true or false)",
               "string": "a string", "array": "a list", "object": "a mapping", "null": "null"}


def describe(node: Mapping[str, Any]) -> str:
    """What a schema node allows, in words: 'an integer >= 1 or null', 'one of "iou", "diou"'."""
    if "description" in node:
        return str(node["description"])
    if "enum" in node:
        return "one of " + ", ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return f"exactly {json.dumps(node['const'])}"
    types = node.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    words = []
    for t in types:
        word = _TYPE_WORDS.get(t, t)
        if t in ("integer", "number") and _bounds(node):
            word += " " + _bounds(node)
        if t == "array":
            if node.get("minItems") is not None and node.get("minItems") == node.get("maxItems"):
                word = f"a list of {node['minItems']}"
            elif node.get("minItems"):
                word += f" of at least {node['minItems']} item{'s' if node['minItems'] > 1 else ''}"
            if isinstance(node.get("items"), Mapping):
                word += f" (each {describe(_resolve(node['items']))})"
        words.append(word)
    return " or ".join(words) if words else "a value the schema accepts"


def _resolve(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/name`) to the definition it names."""
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema()
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return target


def _show(value: Any) -> str:
    kind = "null" if value is None else type(value).__name__
    text = repr(value)
    return f"{text[:80]}... ({kind})" if len(text) > 80 else f"{text} ({kind})"


def _source_of(key: str, sources: Mapping[str, str]) -> str | None:
    """The source that last set `key` or a mapping above it (`train.acc` set as a whole)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in sources:
            return sources[".".join(parts[:n])]
    return None


def _message(error, where: str, sources: Mapping[str, str]) -> str:
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (f"{where}: unknown config key(s) {', '.join(f'{key}.{e}' if key else e for e in extra)}; "
                f"allowed under {key or '<root>'}: {', '.join(allowed)}")
    node = error.schema  # the key's whole node ($ref resolved): everything allowed there
    source = _source_of(key, sources)
    by = f" (set by {source})" if source else ""
    return f"{where}: {key or '<root>'} = {_show(error.instance)}{by} is not allowed: must be {describe(node)}"


def check_run_config(config: Mapping[str, Any], where: str = "run config", sources: Mapping[str, str] | None = None) -> None:
    """Raise one `ConfigError` for the first schema violation of the plain (resolved) `config`."""
    errors = sorted(_validator().iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError(_message(errors[0], where, sources or {}))
