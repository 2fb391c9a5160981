"""`robotflow.scripts.options`: click options generated from a dataclass's fields, and the dataclass built back."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import click
import pytest
from click.testing import CliRunner

from robotflow.runtime.params import one_of, path_writable, positive
from robotflow.scripts.options import build, dataclass_options


def _pair(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    a, sep, b = value.partition(",")
    if not sep:
        raise ValueError(f"'{value}' is not A,B")
    return int(a), int(b)


@dataclass(frozen=True)
class Example:
    name: str = field(metadata={"help": "A name."})
    count: int = field(default=3, metadata={"help": "How many."})
    rate: float | None = None
    verbose: bool = False
    color: bool = field(default=True, metadata={"flag": "--no-color", "negate": True, "help": "Plain output."})
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    level: int = field(default=1, metadata={"range": (1, 5)})
    pair: tuple[int, int] | None = field(default=None, metadata={"parse": _pair, "metavar": "A,B"})
    tags: tuple[str, ...] = field(default=(), metadata={"flag": "--tag", "multiple": True})
    hidden: str = field(default="x", metadata={"cli": False})


@click.command()
@dataclass_options(Example)
def example(**params):
    click.echo(repr(build(Example, params, hidden="y")))


def test_parsed_options_build_the_dataclass():
    res = CliRunner().invoke(
        example,
        ["--name", "n", "--count", "5", "--rate", "0.5", "--verbose", "--no-color", "--mode", "b", "--level", "5"]
        + ["--pair", "1,2", "--tag", "t1", "--tag", "t2"],
    )
    assert res.exit_code == 0, res.output
    want = Example("n", 5, 0.5, True, False, "b", 5, (1, 2), ("t1", "t2"), "y")
    assert res.output.strip() == repr(want)
    defaults = CliRunner().invoke(example, ["--name", "n"])
    assert defaults.output.strip() == repr(Example("n", hidden="y"))


def test_help_shows_flags_defaults_and_metavars_once():
    out = CliRunner().invoke(example, ["--help"]).output
    assert "--name TEXT" in out and "[required]" in out and "[default: 3]" in out
    assert "--no-color" in out and "--color" not in out.replace("--no-color", "")
    assert "[a|b]" in out and "1<=x<=5" in out and "--pair A,B" in out and "--hidden" not in out


def test_bad_values_are_one_line_usage_errors():
    for args, msg in [
        (["--name", "n", "--pair", "12"], "Invalid value for --pair: '12' is not A,B"),
        (["--name", "n", "--level", "9"], "Invalid value for '--level'"),
        ([], "Missing option '--name'"),
    ]:
        res = CliRunner().invoke(example, args)
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output


def test_unknown_metadata_is_refused():
    @dataclass
    class Typo:
        x: int = field(default=1, metadata={"hlep": "typo"})

    with pytest.raises(TypeError, match="hlep"):
        dataclass_options(Typo)


def test_libraries_behind_the_commands_import_without_click():
    code = (
        "import sys, robotflow.training, robotflow.codecs.conversion, robotflow.serving.run, robotflow.evaluation,"
        " robotflow.recording.session, robotflow.views.options;"
        "assert 'click' not in sys.modules, 'click imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _even(value: int) -> None:
    if value % 2:
        raise ValueError(f"must be even, got {value}")


@dataclass(frozen=True)
class Checked:
    rate: float = positive(1.0, help="Hz.")
    out: str | None = path_writable(None)
    pairs: int = field(default=2, metadata={"check": _even})
    fruit: str = one_of(("apple", "pear"), "pear")


@click.command()
@dataclass_options(Checked)
def checked(**params):
    click.echo(repr(build(Checked, params)))


def test_param_constraints_become_option_types_and_checks(tmp_path):
    """The vocabulary node params use (runtime/params.py) makes click types, and build() checks the rest."""
    out = CliRunner().invoke(checked, ["--help"]).output
    assert "--rate FLOAT RANGE" in out and "x>0" in out and "[apple|pear]" in out
    ok = CliRunner().invoke(checked, ["--rate", "2.5", "--out", str(tmp_path / "new"), "--pairs", "4"])
    assert ok.output.strip() == repr(Checked(2.5, str(tmp_path / "new"), 4))
    res = CliRunner().invoke(checked, ["--rate", "0"])
    assert res.exit_code == 2 and "Invalid value for '--rate': 0.0 is not in the range x>0" in res.output
    (tmp_path / "f").write_text("")
    for args, line in [
        (["--out", str(tmp_path / "f" / "d")], f"Error: --out {tmp_path / 'f' / 'd'} cannot be created: "),
        (["--pairs", "3"], "Error: --pairs must be even, got 3"),
    ]:
        res = CliRunner().invoke(checked, args)
        assert res.exit_code == 1 and res.output.startswith(line) and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists(), "checking a path creates nothing"
