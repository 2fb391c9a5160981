"""Click options generated from the dataclass they fill, so that each option is spelled once: in its field.

A field becomes the option `--field-name` (underscores as dashes), typed from its annotation (int, float, str;
a bool is a flag). A field without a default is required; a default that is not None, "", a bool or a
repeatable option's is shown in --help. The field's `metadata` (plain keys, so the library needs no click) adds:

- help: the help text.
- flag: another option name (e.g. "--input" for `input_path`).
- negate: a bool that defaults to True is shown as the flag `flag` ("--no-..."), which sets it to False.
- metavar, envvar: as in click.
- range, min_open, choices, path, check: the value's constraints, the vocabulary node params use
  (robotflow/runtime/params.py, with helpers such as `positive()`): range and choices become click's
  IntRange/FloatRange and Choice (usage errors), and `build` checks the rest (a path that cannot be created,
  a device or codec name) before the command runs: one line, `--option problem`, exit status 1.
- multiple: the option repeats; the field gets the tuple of values, or what `parse` makes of it.
- parse: the raw value -> the field's value; a ValueError it raises becomes click's one-line usage error.
- cli: False leaves the field off the command line (the command sets it with `build(..., field=value)`).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from robotflow.runtime.params import CONSTRAINT_KEYS, choices_of, value_problem

METADATA_KEYS = frozenset({"help", "flag", "negate", "metavar", "envvar", "multiple", "parse", "cli"}) | CONSTRAINT_KEYS
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are command-line options (metadata checked for unknown keys)."""
    out = []
    for f in dataclasses.fields(cls):
        unknown = set(f.metadata) - METADATA_KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown option metadata {sorted(unknown)}")
        if f.metadata.get("cli", True):
            out.append(f)
    return out


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _scalar_type(annotation: Any) -> type | None:
    """int/float/str/bool from `X` or `X | None`; None for anything else (click then passes strings)."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    args = tuple(a for a in args if a is not type(None))
    return args[0] if len(args) == 1 and args[0] in (int, float, str, bool) else None


def _click_type(f: dataclasses.Field, annotation: Any) -> Any:
    meta = f.metadata
    scalar = _scalar_type(annotation)
    if "choices" in meta:
        return click.Choice([str(c) for c in choices_of(meta)])
    if "range" in meta and not meta.get("multiple"):
        lo, hi = meta["range"]
        kind = click.FloatRange if scalar is float else click.IntRange
        return kind(lo, hi, min_open=bool(meta.get("min_open")))
    return None if meta.get("multiple") or scalar in (str, bool) else scalar


def _callback(f: dataclasses.Field) -> Callable[[click.Context, click.Parameter, Any], Any] | None:
    parse = f.metadata.get("parse")
    if parse is None:
        return None

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return parse(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=flag_name(f)) from None

    return callback


def _option(f: dataclasses.Field, annotation: Any) -> Callable[[F], F]:
    meta = f.metadata
    has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    is_flag = _scalar_type(annotation) is bool and not meta.get("multiple")
    kwargs: dict[str, Any] = {"help": meta.get("help"), "callback": _callback(f)}
    if meta.get("multiple"):
        kwargs["multiple"] = True
    elif is_flag:
        kwargs["is_flag"] = True
    elif not has_default:
        kwargs["required"] = True
    else:
        kwargs["default"] = f.default
        kwargs["show_default"] = f.default not in (None, "")  # an empty default says nothing
    for key in ("metavar", "envvar"):
        if key in meta:
            kwargs[key] = meta[key]
    click_type = _click_type(f, annotation)
    if click_type is not None:
        kwargs["type"] = click_type
    return click.option(flag_name(f), f.name, **kwargs)


def dataclass_options(cls: type, *, exclude: Iterable[str] = ()) -> Callable[[F], F]:
    """Decorator: one click option per command-line field of `cls`, listed in field order."""
    hints = typing.get_type_hints(cls)
    skip = set(exclude)
    options = [_option(f, hints[f.name]) for f in cli_fields(cls) if f.name not in skip]

    def decorate(command: F) -> F:
        return functools.reduce(lambda cmd, opt: opt(cmd), reversed(options), command)

    return decorate


def build(cls: type[T], params: dict[str, Any], **fixed: Any) -> T:
    """The `cls` that click's parsed `params` describe; `fixed` gives the fields kept off the command line."""
    values: dict[str, Any] = {}
    for f in cli_fields(cls):
        if f.name not in params:
            continue
        value = params[f.name]
        if f.metadata.get("negate"):
            value = not value
        elif f.metadata.get("multiple") and "parse" not in f.metadata:
            value = tuple(value)
        problem = value_problem(value, f.metadata)
        if problem:  # the same one line as the library's own check (runtime.params.check_options)
            raise click.ClickException(f"{flag_name(f)} {problem}")
        values[f.name] = value
    return cls(**values, **fixed)
