"""Typed configuration: YAML (a ``yaml.SafeLoader`` that refuses repeated keys) validated into dataclasses.

Configs are data, as in rl-baselines3-zoo, but nothing is ever ``eval``-ed: a YAML mapping is
converted into a dataclass field by field; an unknown key, a wrong type or an out-of-range value
raises :class:`~policyshare.errors.ConfigError` naming the file, the key path and the fix
(with a "did you mean" for typos).

Per-env files (``configs/ppo.yaml`` …) are keyed by env id with a ``default:`` entry; keys may
also be glob patterns (``ALE/*``). The resolved config of an env is ``default`` ← every
matching pattern (in file order) ← the exact id ← command-line overrides (``--set a.b=v``).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from policyshare.errors import ConfigError

T = TypeVar("T")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping in a YAML document repeats a key (plain YAML loaders keep the later value)."""

    def __init__(self, key: Any, first: yaml.Mark, again: yaml.Mark) -> None:
        super().__init__(None, None, f"duplicate key {key!r}", again)
        self.key, self.first, self.again = key, first, again


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping repeating a key (at any depth).

    YAML 1.2 requires keys to be unique, but PyYAML silently keeps the later value, so a setting
    given twice would be half-ignored. Merge keys (``<<: *anchor``) may still be overridden.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if first is not key_node.start_mark:
                raise DuplicateKeyError(key, first, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (``yaml.SafeLoader``; nothing is constructed but plain data) and
    refuse repeated keys (:class:`UniqueKeyLoader`).

    Raises:
        yaml.YAMLError: malformed YAML, or :class:`DuplicateKeyError`.
    """
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml(path: str | Path) -> Any:
    """Load a YAML file safely with :func:`load_yaml` (a ``yaml.SafeLoader`` that refuses
    repeated keys). Every config and suite file is read through here.

    Raises:
        ConfigError: if the file is missing, is not valid YAML or repeats a key in a mapping
            (naming the lines of both).
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found; pass an existing YAML file")
    try:
        return load_yaml(p.read_text())
    except DuplicateKeyError as e:
        raise ConfigError(f"{p}: duplicate key {e.key!r} at line {e.again.line + 1} (first at line "
                          f"{e.first.line + 1}); keep one of them") from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        context = getattr(e, "context", None)
        mark = getattr(e, "problem_mark", None)
        opened = getattr(e, "context_mark", None)
        if "<stream end>" in problem and opened is not None:
            # The file ended inside a construct: point at where it was opened, not at the end.
            mark = opened
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = f"{context}, {problem}" if context else problem
        raise ConfigError(f"{p}: malformed YAML{where}: {what}; fix the syntax") from e


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple, Sequence):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {_type_name(tp)}")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        # Members are tried in declaration order: declare ``float | str``, not ``str | float``.
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" as a string; parse it as a number (never eval).
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, strictly.

    Every key must be a field of ``cls``; every value must convert to the field's type.
    Missing keys take the field's default. The dataclass's ``__post_init__`` checks ranges.

    Args:
        cls: a dataclass type.
        data: a mapping (``None`` means empty).
        where: a location prefix for messages, e.g. ``"configs/ppo.yaml: MinAtar/Breakout-v1"``.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type, missing required key or a
            value the dataclass rejects.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(typing.cast(Any, cls)) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{where}: unknown key {key!r}{hint}")
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}")
    for name, f in fields.items():
        if (name not in kwargs and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING):
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def to_dict(obj: Any) -> Any:
    """Plain-data form of a (nested) dataclass, for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``over`` into a copy of ``base`` (mappings merge, the rest replaces)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=[1, 2]"]`` into ``{"a": {"b": 1}, "c": [1, 2]}``.

    Values are parsed with :func:`load_yaml` (numbers, booleans, lists), never evaluated.

    Raises:
        ConfigError: an item without ``=``, with an empty key, or a value repeating a key.
    """
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set hyperparams.learning_rate=1e-4")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: empty key; expected key=value")
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except DuplicateKeyError as e:
            raise ConfigError(f"--set {item!r}: duplicate key {e.key!r}; keep one of them") from None
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set both as a value and a section")
        node[parts[-1]] = value
    return out


def resolve_env_entry(raw: Any, env_id: str, path: str | Path) -> dict[str, Any]:
    """Merge the ``default:`` entry, matching glob keys and the exact ``env_id`` entry.

    Args:
        raw: the YAML document (a mapping keyed by env id / pattern / ``default``).
        env_id: the Gymnasium id being configured.
        path: the file, for messages.

    Raises:
        ConfigError: if the document is not a mapping or an entry is not a mapping.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping keyed by env id with a 'default:' entry")
    merged: dict[str, Any] = {}
    keys = ["default"] + [k for k in raw if k != "default" and k != env_id
                          and any(c in str(k) for c in "*?[") and fnmatch.fnmatchcase(env_id, str(k))]
    keys += [env_id] if env_id in raw else []
    for k in keys:
        entry = raw.get(k)
        if entry is None:
            continue
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: entry {k!r} must be a mapping of settings, got {entry!r}")
        merged = deep_merge(merged, entry)
    return merged


def check_positive(where: str, **values: float) -> None:
    """Raise ConfigError unless every value is > 0."""
    for name, v in values.items():
        if not v > 0:
            raise ConfigError(f"{where}{name} must be > 0, got {v}")


def check_seeds(seeds: Sequence[int], where: str = "seeds") -> list[int]:
    """Refuse a seed list that repeats a seed (a repeated seed would count one run twice, and
    intervals over "two seeds" would come from one).

    Args:
        seeds: the seeds, in the user's order.
        where: the option or key that gave them (``--seeds``, ``seeds``), for the message.

    Returns:
        The seeds as a list, unchanged.

    Raises:
        ConfigError: a seed given twice.
    """
    seen: set[int] = set()
    for s in seeds:
        if s in seen:
            given = " ".join(map(str, seeds))
            raise ConfigError(f"{where}: seed {s} is given twice ({given}); list each seed once")
        seen.add(s)
    return list(seeds)


def check_non_negative(where: str, **values: float) -> None:
    """Raise ConfigError unless every value is >= 0."""
    for name, v in values.items():
        if not v >= 0:
            raise ConfigError(f"{where}{name} must be >= 0, got {v}")


def check_unit_interval(where: str, **values: float) -> None:
    """Raise ConfigError unless every value lies in [0, 1]."""
    for name, v in values.items():
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{where}{name} must lie in [0, 1], got {v}")
