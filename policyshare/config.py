"""Typed configuration, the one mechanism of every command: YAML read safely, validated by
pydantic v2 into settings dataclasses, and the one "same settings on resume" check.

Configs are data, as in rl-baselines3-zoo, but nothing is ever ``eval``-ed: YAML is read with a
``yaml.SafeLoader`` that refuses repeated keys (:func:`read_yaml`) and validated into a settings
class: a pydantic dataclass with :data:`SETTINGS` (``extra="forbid"``), typed fields, ``Field``
constraints and ``Literal`` choices, mixing in :class:`Settings` (YAML's scalars read strictly).
An unknown key, a wrong type or an out-of-range value raises
:class:`~policyshare.errors.ConfigError`: one line naming the file, the key path and the fix,
with a "did you mean" for typos (:func:`from_dict` formats pydantic's errors).

Per-env files (``configs/ppo.yaml`` …) are keyed by env id with a ``default:`` entry; keys may
also be glob patterns (``ALE/*``). The resolved config of an env is ``default`` ← every
matching pattern (in file order) ← the exact id ← command-line overrides (``--set a.b=v``).
:func:`load_config` (and :func:`read_settings`, its first half) is the loader of train,
progressive, distill, experiment, vision and the suites; :func:`check_same_settings` refuses a
``--resume`` with other settings than a run folder started with, for every command.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

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


# ---------------------------------------------------------------------------------------------
# Typed settings: pydantic v2 dataclasses, and pydantic's errors as one line naming file and key

#: The pydantic configuration of every settings class: an unknown key is an error.
SETTINGS = ConfigDict(extra="forbid")

#: A fraction or probability: a number in [0, 1].
UnitInterval = Annotated[float, Field(ge=0, le=1)]


class Settings:
    """Mixin of every settings class: YAML's scalars read as the old converter read them.

    Use it with ``@pydantic.dataclasses.dataclass(config=SETTINGS)`` so that the class stays a
    dataclass (``dataclasses.replace``, ``asdict`` and ``fields`` work, and ``replace``
    validates again) while pydantic checks keys, types, ``Field`` constraints and ``Literal``
    choices. On top of pydantic's lax mode this mixin makes ``true``/``false`` the only
    booleans (never ``"yes"`` or ``1``), refuses a boolean where a number is expected, reads an
    integer written as ``1e6`` (PyYAML 1.1 reads it as a string), and lets an empty section
    (``trunk:``) take its defaults. Checks across fields live in ``__post_init__`` and raise
    ``ValueError``; :func:`from_dict` turns every failure into one :class:`ConfigError` line.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _yaml_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        fields = getattr(cls, "__pydantic_fields__", {})
        field_info = fields.get(info.field_name)
        return value if field_info is None else _coerce(field_info.annotation, value)


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` metadata."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _optional(tp: Any) -> Any:
    """``X`` for ``X | None`` (without ``Annotated`` metadata); any other type as it is."""
    tp = _strip(tp)
    members = [a for a in get_args(tp) if a is not type(None)]
    return _strip(members[0]) if get_origin(tp) in (Union, types.UnionType) and len(members) == 1 else tp


def _is_settings(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _refuse(expected: str, value: Any) -> PydanticCustomError:
    return PydanticCustomError("config", "expected {expected}, got {got}", {"expected": expected, "got": repr(value)})


def _coerce(tp: Any, value: Any) -> Any:
    """Prepare ``value`` for pydantic's lax validation as type ``tp`` (see :class:`Settings`)."""
    tp = _strip(tp)
    origin = get_origin(tp)
    if value is None:
        return {} if _is_settings(tp) else None
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _coerce(members[0], value)
        if isinstance(value, bool) and not any(_strip(a) is bool for a in members):
            raise _refuse(_type_name(tp), value)
        return value
    if tp is bool and not isinstance(value, bool):
        raise _refuse("true or false", value)
    if tp in (int, float) and isinstance(value, bool):
        raise _refuse(_type_name(tp), value)
    if tp is int and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else value
    if origin in (list, tuple, Sequence) and isinstance(value, (list, tuple)) and get_args(tp):
        return [_coerce(get_args(tp)[0], v) for v in value]
    if origin in (dict, Mapping) and isinstance(value, Mapping) and len(get_args(tp)) == 2:
        return {str(k): _coerce(get_args(tp)[1], v) for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    """How a message names type ``tp``: ``an integer``, ``'relu' | 'trec'``, ``list of int`` …"""
    tp = _strip(tp)
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        args = get_args(tp)
        return f"list of {getattr(_strip(args[0]), '__name__', args[0])}" if args else "list"
    if origin in (dict, Mapping) or tp is dict or _is_settings(tp):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


@dataclasses.dataclass
class _Place:
    """Where a pydantic error points: the settings object holding the key (its dotted path and
    class), the key and its field, what follows the key (``[0]`` of a list) and the type there."""

    owner_path: str = ""
    owner: Any = None
    name: str = ""
    field: FieldInfo | None = None
    rest: str = ""
    tp: Any = None

    @property
    def path(self) -> str:
        return f"{self.owner_path}.{self.name}{self.rest}" if self.name else self.rest


def _place(cls: type, loc: tuple[int | str, ...]) -> _Place:
    """Follow pydantic's error location ``loc`` through the settings classes from ``cls``."""
    place = _Place(tp=cls)
    for item in loc:
        tp = _strip(place.tp)
        members = [a for a in get_args(tp) if a is not type(None)]
        if get_origin(tp) in (Union, types.UnionType):
            if len(members) > 1:
                break  # the rest names a union member: report the whole union
            tp = _strip(members[0])
        origin = get_origin(tp)
        if _is_settings(tp):
            field = getattr(tp, "__pydantic_fields__", {}).get(str(item))
            place = _Place(place.path, tp, str(item), field, "", field.annotation if field else None)
        elif origin in (list, tuple, Sequence) and isinstance(item, int):
            place.rest, place.tp = f"{place.rest}[{item}]", get_args(tp)[0] if get_args(tp) else Any
        else:
            place.rest, place.tp = f"{place.rest}.{item}", get_args(tp)[-1] if origin in (dict, Mapping) else Any
    return place


def _bounds(place: _Place, ctx: Mapping[str, Any]) -> str:
    """``must be > 0``, ``must lie in [0, 1]`` … from the constraints of the value's type, else
    from the error's own ``ctx``."""
    found: dict[str, Any] = dict(ctx)
    metadata = list(place.field.metadata) if place.field is not None and not place.rest else []
    if get_origin(place.tp) is Annotated:
        metadata += list(get_args(place.tp)[1:])
    for m in metadata:
        found.update({k: getattr(m, k) for k in ("gt", "ge", "lt", "le") if getattr(m, k, None) is not None})
    low = next(((k, found[k]) for k in ("gt", "ge") if k in found), None)
    high = next(((k, found[k]) for k in ("lt", "le") if k in found), None)
    if low and high:
        return (f"must lie in {'(' if low[0] == 'gt' else '['}{low[1]:g}, {high[1]:g}"
                f"{')' if high[0] == 'lt' else ']'}")
    key, bound = low or high or ("gt", 0)
    return f"must be {dict(gt='>', ge='>=', lt='<', le='<=')[key]} {bound:g}"


_TYPE_ERRORS = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
                "dict": "a mapping", "dataclass": "a mapping", "model": "a mapping", "finite": "a finite number"}


def describe_error(cls: type, error: Mapping[str, Any], where: str) -> str:
    """One line for one of pydantic's errors validating ``cls``, naming file, key and fix.

    Args:
        cls: the settings class validated.
        error: one entry of ``pydantic.ValidationError.errors()``.
        where: the location of the data, e.g. ``configs/ppo.yaml [MinAtar/Breakout-v1]``.
    """
    kind, value = error["type"], error.get("input")
    place = _place(cls, tuple(error["loc"]))
    at, owner = f"{where}{place.path}", f"{where}{place.owner_path}"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        keys = list(getattr(place.owner, "__pydantic_fields__", {}))
        close = difflib.get_close_matches(place.name, keys, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(keys)}"
        return f"{owner}: unknown key {place.name!r}{hint}"
    if kind in ("missing_argument", "missing"):
        return f"{owner}: missing required key {place.name!r}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{owner}: {place.name}{place.rest} {_bounds(place, error.get('ctx') or {})}, got {value}"
    if kind in ("value_error", "assertion_error"):
        return f"{at}: {error['ctx']['error']}"
    if kind == "config":
        return f"{at}: {error['msg']}"
    if kind == "literal_error":
        choices = _type_name(_optional(place.tp)) if get_origin(_optional(place.tp)) is Literal \
            else error["ctx"]["expected"]
        return f"{at}: {value!r} is not one of {choices}"
    expected = _TYPE_ERRORS.get(kind.split("_")[0])
    if expected is None or get_origin(_optional(place.tp)) in (Union, types.UnionType):
        expected = _type_name(place.tp) if place.tp not in (None, Any) else error["msg"].lower()
    return f"{at}: expected {expected}, got {value!r}"


#: One pydantic validator per settings class, built on first use.
_ADAPTERS: dict[type, TypeAdapter[Any]] = {}


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Validate a mapping into settings class ``cls`` (a pydantic dataclass with
    :data:`SETTINGS`), strictly: the one place a config becomes typed.

    Every key must be a field of ``cls`` (``extra="forbid"``), every value must have the
    field's type and lie in its ``Field`` range; missing keys take the defaults.

    Args:
        cls: the settings class.
        data: a mapping (``None`` means empty).
        where: a location prefix for messages, e.g. ``"configs/ppo.yaml [MinAtar/Breakout-v1]"``.

    Raises:
        ConfigError: one line for the first problem (an unknown key, with a "did you mean",
            before any other): the file, the key path, what was expected and what was given.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    try:
        adapter = _ADAPTERS.get(cls) or _ADAPTERS.setdefault(cls, TypeAdapter(cls))
        return adapter.validate_python({str(k): v for k, v in data.items()})
    except ValidationError as e:
        errors = sorted(e.errors(), key=lambda err: err["type"] not in ("unexpected_keyword_argument",
                                                                        "extra_forbidden"))
        raise ConfigError(describe_error(cls, errors[0], where)) from None


def with_changes(settings: T, where: str = "config", **changes: Any) -> T:
    """``settings`` with some fields changed (e.g. ``--timesteps`` from the command line),
    validated again like a loaded config.

    Raises:
        ConfigError: one line naming the problem (a field's range, or a check across fields
            such as "trains nothing") and the fix, as :func:`from_dict` words it.
    """
    return from_dict(type(settings), {**to_dict(settings), **changes}, where)


def to_dict(obj: Any) -> Any:
    """Plain-data form of (nested) settings, for YAML/JSON: mappings, lists and scalars."""
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


def read_settings(path: str | Path, *, env_id: str | None = None, overrides: Mapping[str, Any] | None = None,
                  expected: str = "a mapping of settings", optional: bool = False) -> tuple[dict[str, Any], str]:
    """The one config loader's first half: a YAML file's settings, resolved and overridden.

    Args:
        path: the YAML file.
        env_id: for files keyed by env id (``configs/ppo.yaml`` …): resolve ``default`` ←
            matching glob keys ← this id (:func:`resolve_env_entry`); ``None`` for files that
            are one mapping of settings.
        overrides: nested mapping merged last (``--set``, :func:`parse_overrides`).
        expected: what the file should hold, for the message when it is not a mapping.
        optional: a missing file means no settings (the defaults) instead of an error.

    Returns:
        ``(settings, where)``: the merged mapping and the location messages name
        (``path``, or ``path [env_id]``).

    Raises:
        ConfigError: a missing (unless ``optional``) or malformed file, or one that is not a
            mapping.
    """
    p = Path(path)
    raw = None if optional and not p.is_file() else read_yaml(p)
    if env_id is not None:
        raw, where = resolve_env_entry(raw, env_id, p), f"{p} [{env_id}]"
    else:
        raw, where = {} if raw is None else raw, str(p)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{p}: expected {expected}, got {raw!r}")
    return deep_merge(raw, overrides or {}), where


def load_config(cls: type[T], path: str | Path, *, env_id: str | None = None,
                overrides: Mapping[str, Any] | None = None, expected: str = "a mapping of settings",
                optional: bool = False) -> T:
    """Load a config file into settings class ``cls``: the one loader of every command.

    :func:`read_settings` (the file, resolved for ``env_id``, with ``overrides``), then
    :func:`from_dict`. Arguments as there.

    Raises:
        ConfigError: a missing or malformed file, an unknown key, a wrong type or a value out
            of range, as one line naming the file and the key.
    """
    raw, where = read_settings(path, env_id=env_id, overrides=overrides, expected=expected, optional=optional)
    return from_dict(cls, raw, where)


def as_stored(settings: Mapping[str, Any]) -> Any:
    """``settings`` as a run folder's ``config.yaml`` stores and reads them back (YAML's plain
    data: tuples become lists), so settings now compare equal to settings then."""
    return yaml.safe_load(yaml.safe_dump(dict(settings), sort_keys=False))


def setting_differences(then: Any, now: Any, ignore: Sequence[str] = (), prefix: str = "") -> list[str]:
    """Every setting that differs, as ``key.path: <then> then, <now> now`` (keys sorted);
    top-level keys in ``ignore`` are skipped."""
    if isinstance(then, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(then) | set(now), key=str):
            if not (not prefix and k in ignore):
                out += setting_differences(then.get(k), now.get(k), (), f"{prefix}{k}.")
        return out
    return [] if then == now else [f"{prefix.rstrip('.')}: {then!r} then, {now!r} now"]


def check_same_settings(folder: str | Path, stored: str | Path, settings: Mapping[str, Any], *,
                        ignore: Sequence[str] = (), fix: str = "resume with the command it started with "
                        "(see its meta.json), or choose another --run-dir") -> dict[str, Any]:
    """Refuse to resume a run folder with other settings than it started with: the one check of
    every command's ``--resume``.

    Args:
        folder: the run folder, for the message.
        stored: its ``config.yaml`` (the settings it started with); a missing file passes.
        settings: the settings now, as they would be stored.
        ignore: top-level keys that may differ (operational ones that do not change results,
            such as ``device``, or ones the command restores from ``stored`` itself).
        fix: what to do instead, for the message.

    Returns:
        The settings the folder started with (empty if ``stored`` is missing).

    Raises:
        UserError: naming (up to four of) the settings that differ, then and now.
        CheckpointError: ``stored`` is not readable YAML.
    """
    from policyshare.errors import CheckpointError, UserError

    p = Path(stored)
    if not p.is_file():
        return {}
    try:
        then = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise CheckpointError(f"{p} is corrupt ({e}); cannot check what the run was started with") from e
    diff = setting_differences(then, as_stored(settings), ignore)
    if diff:
        shown = "; ".join(diff[:4]) + ("; …" if len(diff) > 4 else "")
        raise UserError(f"cannot resume {folder} with other settings ({shown}); {fix}")
    return dict(then)


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
