"""Config machinery: the schema vocabulary (`Opt` and its helpers), validation of a raw mapping
against a schema, `--set a.b=c` overrides, and constructor-argument checks.

The schemas themselves live with what they configure: models/schema.py (model arguments),
datasets/schema.py (data arguments and views), kvq/config.py (the run keys, composed from both).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import yaml

from kvq.core.errors import ConfigError
from kvq.core.registry import did_you_mean

__all__ = ["REQUIRED", "ConfigError", "Opt", "num", "integer", "boolean", "string", "mapping", "validate_mapping",
           "parse_override", "apply_overrides", "Config", "source_of", "constructor_args", "raw_at", "schema_rows",
           "range_text", "in_range"]

REQUIRED = object()


@dataclass
class Opt:
    """One config key: accepted types, default (REQUIRED if none), doc, allowed values."""

    types: tuple
    default: Any = None
    doc: str = ""
    choices: Optional[Sequence[Any]] = None
    children: Optional[dict[str, "Opt"]] = None  # fixed sub-keys
    each: Optional["Opt"] = None  # mapping with free keys, each value of this schema
    nullable: bool = True
    deprecated: str = ""  # accepted for reference configs; says what happens
    min: Optional[float] = None  # allowed range of a number (None: unbounded); see `range_text`
    max: Optional[float] = None
    min_exclusive: bool = False  # True: value > min (else >= min)
    max_exclusive: bool = False  # True: value < max (else <= max)


def range_text(low: Optional[float], high: Optional[float], low_open: bool = False, high_open: bool = False) -> str:
    """'> 0', '>= 1', '<= 5', '[0, 1]', '[0, 1)': the allowed range, for messages and the docs table."""
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}"


def in_range(value: Any, low: Optional[float], high: Optional[float], low_open: bool = False,
             high_open: bool = False) -> bool:
    """True if the number `value` lies in the range (non-numbers and None are not checked here)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if value != value:  # NaN is in no range
        return False
    if low is not None and (value <= low if low_open else value < low):
        return False
    return not (high is not None and (value >= high if high_open else value > high))


def _opt_range(opt: Opt) -> Optional[str]:
    if opt.min is None and opt.max is None:
        return None
    return range_text(opt.min, opt.max, opt.min_exclusive, opt.max_exclusive)


def num(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((int, float), default, doc, nullable=False, **kw)


def integer(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((int,), default, doc, nullable=False, **kw)


def boolean(default: Any = REQUIRED, doc: str = "", **kw: Any) -> Opt:
    return Opt((bool,), default, doc, nullable=False, **kw)


def string(default: Any = REQUIRED, doc: str = "", nullable: bool = True, **kw: Any) -> Opt:
    return Opt((str,), default, doc, nullable=nullable, **kw)


def mapping(children: Optional[dict[str, Opt]] = None, doc: str = "", each: Optional[Opt] = None) -> Opt:
    return Opt((dict,), {}, doc, children=children, each=each)


def _type_name(types: tuple) -> str:
    if set(types) == {int, float}:
        return "number"
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "mapping", object: "any"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_type(value: Any, opt: Opt) -> bool:
    if value is None:
        return opt.nullable
    if object in opt.types:
        return True
    if isinstance(value, bool) and bool not in opt.types:
        return False
    return isinstance(value, opt.types)


def validate_mapping(node: Any, schema: Mapping[str, Opt], path: str, source: str, warnings: list[str]) -> dict:
    if not isinstance(node, Mapping):
        raise ConfigError(f"{source}: '{path or '<top>'}' must be a mapping, got {type(node).__name__}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in schema:
            raise ConfigError(f"{source}: unknown key '{full}'{did_you_mean(str(key), schema)}")
        out[key] = _validate_value(value, schema[key], full, source, warnings)
    for key, opt in schema.items():
        full = f"{path}.{key}" if path else key
        if key in out:
            continue
        if opt.default is REQUIRED:
            raise ConfigError(f"{source}: missing required key '{full}' ({opt.doc})")
        if opt.children is not None:
            out[key] = validate_mapping({}, opt.children, full, source, warnings)
        else:
            out[key] = copy.deepcopy(opt.default)
    return out


def _validate_value(value: Any, opt: Opt, path: str, source: str, warnings: list[str]) -> Any:
    if isinstance(value, str) and float in opt.types:  # PyYAML reads 3e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if not _check_type(value, opt):
        raise ConfigError(f"{source}: key '{path}' must be {_type_name(opt.types)}, got {value!r}")
    if opt.deprecated and value not in (None, opt.default, {}):
        warnings.append(f"{source}: '{path}': {opt.deprecated}")
    if opt.choices is not None and value is not None and value not in opt.choices:
        raise ConfigError(f"{source}: key '{path}' is {value!r}; allowed: {', '.join(map(str, opt.choices))}"
                          f"{did_you_mean(str(value), map(str, opt.choices))}")
    if isinstance(value, float) and int in opt.types and float not in opt.types:
        raise ConfigError(f"{source}: key '{path}' must be an integer, got {value!r}")
    if not in_range(value, opt.min, opt.max, opt.min_exclusive, opt.max_exclusive):
        raise ConfigError(f"{source}: key '{path}' is {value!r}; allowed: {_opt_range(opt)}")
    if value is None and opt.children is not None:
        value = {}
    if opt.children is not None:
        return validate_mapping(value, opt.children, path, source, warnings)
    if opt.each is not None:
        value = value or {}
        return {k: _validate_value(v, opt.each, f"{path}.{k}", source, warnings) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b=c' -> (['a', 'b'], yaml value of c)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected KEY.PATH=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Set each 'a.b=c' in the raw (unvalidated) config dict."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return raw


class Config(dict):
    """A validated config: a plain dict plus where it came from (`source`) and `warnings`."""

    def __init__(self, data: dict, source: str, warnings: list[str]) -> None:
        super().__init__(data)
        self.source = source
        self.warnings = warnings


def source_of(cfg: Mapping[str, Any]) -> str:
    """Where a config came from, for messages: `Config.source`; 'config' for a plain mapping."""
    return getattr(cfg, "source", "config")


def constructor_args(cls: type, args: Mapping[str, Any], path: str, source: str,
                     warnings: list[str]) -> dict[str, Any]:
    """`args` (the config mapping at `path`) checked against the constructor of `cls` (a backbone
    or a head): null values take the constructor's default (left out); keys in the class's
    `legacy_args` (reference keys without effect) are left out with a warning; any other key that
    is not a keyword argument is a ConfigError naming the nearest valid one. A number outside the
    class's `arg_ranges` ({name: (min, max)}, inclusive, None = unbounded) is a ConfigError naming
    the key and the allowed range."""
    params = [n for n, p in inspect.signature(cls.__init__).parameters.items()
              if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    legacy: Mapping[str, str] = getattr(cls, "legacy_args", {})
    ranges: Mapping[str, tuple] = getattr(cls, "arg_ranges", {})
    out = {}
    for name, value in args.items():
        if name in legacy:
            warnings.append(f"{source}: '{path}.{name}' is ignored: {legacy[name]}")
        elif name not in params:
            raise ConfigError(f"{source}: unknown key '{path}.{name}'{did_you_mean(name, params)}; "
                              f"valid: {', '.join(params)}")
        elif value is not None:
            low, high = ranges.get(name, (None, None))
            if not in_range(value, low, high):
                raise ConfigError(f"{source}: key '{path}.{name}' is {value!r}; allowed: {range_text(low, high)}")
            out[name] = value
    return out


def raw_at(node: Any, *keys: str) -> Mapping[str, Any]:
    """The raw (unvalidated) mapping under `keys`; {} where it is absent or null."""
    for key in keys:
        node = (node or {}).get(key)
    return node or {}




def schema_rows(schema: Mapping[str, Opt], prefix: str = "") -> list[str]:
    """Markdown table rows (`| key | type | default | meaning |`) of every key of `schema`."""
    rows: list[str] = []
    for key, opt in schema.items():
        full = f"{prefix}{key}"
        default = "required" if opt.default is REQUIRED else ("" if opt.children or opt.each else repr(opt.default))
        doc = opt.doc + (f" (reference key: {opt.deprecated})" if opt.deprecated else "")
        if opt.choices:
            doc += f" [{', '.join(map(str, opt.choices))}]"
        if _opt_range(opt):
            doc += f" (allowed: {_opt_range(opt)})"
        rows.append(f"| `{full}` | {_type_name(opt.types)} | {default} | {doc} |")
        if opt.children:
            rows += schema_rows(opt.children, full + ".")
        elif opt.each is not None and opt.each.children:
            rows += schema_rows(opt.each.children, full + ".<name>.")
    return rows
