"""Param constraints: declared once, on a dataclass field, and checked before anything starts.

A field's `metadata` says which values it takes. Graph validation checks every node's params against it
(`field_problem`) before any node is built, and `robotflow.scripts.options` turns the same keys into click
option types, so a node or a command never repeats the check in code. The keys:

- range: (lo, hi), inclusive bounds, None leaving an end open; for a number, or each number of a list.
- min_open: True makes lo exclusive (> lo rather than >= lo).
- choices: the allowed values; a tuple, or a function returning them (a registry read when checked).
- path: "writable_dir": a local directory that exists and can be written, or can be created (a URL is not
  checked here: its store says so when it is opened); "writable_file": a file that can be written there.
- check: a function of the value that raises ValueError with the problem (`must be auto, cpu, ...`), for a set
  of values no list holds (a torch device: cuda:0, cuda:1, ...).

The helpers build such fields: `positive()`, `non_negative()`, `in_range()`, `one_of()`, `path_writable()`.
A constraint between fields (workspace min < max) stays in the dataclass's `__post_init__`, which raises
`ParamError` naming the field, so that graph validation can say which line to fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

CONSTRAINT_KEYS = frozenset({"range", "min_open", "choices", "path", "check"})
Choices = Iterable[Any] | Callable[[], Iterable[Any]]


class ParamError(ValueError):
    """A param value out of its allowed set; `field` names it, str() is one line: `param 'x' must be ...`."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"param {field!r} {problem}")
        self.field = field
        self.problem = problem


def _field(default: Any, help: str | None, metadata: Mapping[str, Any] | None, **constraint: Any) -> Any:
    meta = {**(metadata or {}), **constraint}
    if help is not None:
        meta["help"] = help
    return dataclasses.field(default=default, metadata=meta)


def positive(default: Any = dataclasses.MISSING, *, help: str | None = None, metadata=None) -> Any:
    """A number > 0 (a rate, a timestep, a size, a duration)."""
    return _field(default, help, metadata, range=(0, None), min_open=True)


def non_negative(default: Any = dataclasses.MISSING, *, help: str | None = None, metadata=None) -> Any:
    """A number >= 0 (a count where 0 means none, a seed)."""
    return _field(default, help, metadata, range=(0, None))


def in_range(
    lo: float | None,
    hi: float | None,
    default: Any = dataclasses.MISSING,
    *,
    min_open: bool = False,
    help: str | None = None,
    metadata=None,
) -> Any:
    """A number in [lo, hi] ((lo, hi] with min_open); None leaves an end open."""
    return _field(default, help, metadata, range=(lo, hi), min_open=min_open)


def one_of(choices: Choices, default: Any = dataclasses.MISSING, *, help: str | None = None, metadata=None) -> Any:
    """One of `choices` (or of what the function `choices` returns when checked)."""
    return _field(default, help, metadata, choices=choices if callable(choices) else tuple(choices))


def path_writable(default: Any = dataclasses.MISSING, *, help: str | None = None, metadata=None) -> Any:
    """A local directory that can be created and written (a URL is left to its store)."""
    return _field(default, help, metadata, path="writable_dir")


def choices_of(meta: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The allowed values a field's metadata names (calling a registry function), or None."""
    choices = meta.get("choices")
    if choices is None:
        return None
    return tuple(choices() if callable(choices) else choices)


def range_text(lo: float | None, hi: float | None, min_open: bool = False) -> str:
    """`> 0`, `>= 1`, `<= 5` or `in [1, 100]` / `in (0, 1]`."""
    if hi is None:
        return f"> {lo:g}" if min_open else f">= {lo:g}"
    if lo is None:
        return f"<= {hi:g}"
    return f"in {'(' if min_open else '['}{lo:g}, {hi:g}]"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _range_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    lo, hi = meta["range"]
    min_open = bool(meta.get("min_open"))
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if not _is_number(v):
            continue
        low_ok = lo is None or (v > lo if min_open else v >= lo)
        if not low_ok or (hi is not None and v > hi):
            every = " (every value)" if items is value else ""
            return f"must be {range_text(lo, hi, min_open)}{every}, got {value!r}"
    return None


def _choices_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    choices = choices_of(meta)
    if value in choices:
        return None
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"must be one of {', '.join(str(c) for c in choices)}, got {value!r}{hint}"


def path_problem(path: str | os.PathLike, kind: str) -> str | None:
    """Why `path` is not usable as `kind` ("writable_dir" or "writable_file"), or None; a URL is not checked."""
    if kind not in ("writable_dir", "writable_file"):
        raise ValueError(f"unknown path constraint {kind!r}")
    text = os.fspath(path)
    if "://" in text:
        return None
    p = Path(text).expanduser()
    if kind == "writable_file":
        if p.is_dir():
            return f"{text} is a directory; give a file path"
        problem = path_problem(p.absolute().parent, "writable_dir")
        return None if problem is None else f"{text} cannot be written: {problem}"
    if p.exists():
        if not p.is_dir():
            return f"{text} is a file, not a directory; give a directory"
        return None if os.access(p, os.W_OK | os.X_OK) else f"{text} is not writable; give a writable directory"
    parent = p.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{text} cannot be created: {parent} is a file; give a directory path"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{text} cannot be created: {parent} is not writable; give a writable directory"
    return None


def value_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with `value` under a field's metadata (`must be > 0, got -1`), or None; None passes."""
    if value is None:
        return None
    if "range" in meta:
        problem = _range_problem(value, meta)
        if problem:
            return problem
    if "choices" in meta:
        problem = _choices_problem(value, meta)
        if problem:
            return problem
    if "check" in meta:
        try:
            meta["check"](value)
        except ValueError as e:
            return str(e)
    if "path" in meta and isinstance(value, (str, os.PathLike)) and os.fspath(value):
        return path_problem(value, meta["path"])
    return None


def field_problem(cls: type, name: str, value: Any) -> str | None:
    """What is wrong with `value` for field `name` of dataclass `cls`, or None."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    return value_problem(value, f.metadata)


def check_fields(obj: Any) -> None:
    """Raise ParamError for the first field of the dataclass instance `obj` whose value breaks its metadata."""
    for f in dataclasses.fields(obj):
        problem = value_problem(getattr(obj, f.name), f.metadata)
        if problem:
            raise ParamError(f.name, problem)


def check_options(obj: Any, error: type[Exception]) -> None:
    """check_fields for a command's options dataclass, called by the library function it fills: raises
    `error("--flag must be ...")`, naming the option (its metadata's `flag`, else --field-name)."""
    try:
        check_fields(obj)
    except ParamError as e:
        meta = {f.name: f.metadata for f in dataclasses.fields(obj)}[e.field]
        raise error(f"{meta.get('flag') or '--' + e.field.replace('_', '-')} {e.problem}") from None
