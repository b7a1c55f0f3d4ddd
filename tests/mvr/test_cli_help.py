"""The ``mvr`` command line as a person meets it: a fast ``--help`` that imports no torch,
one summary per command that matches its docstring, an example in every command's help,
and one name per option across commands."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from mvr.cli import COMMANDS, app, load_command


def test_help_imports_neither_torch_nor_numpy() -> None:
    code = ("import sys, runpy; sys.argv = ['mvr', '--help']\n"
            "try:\n    runpy.run_module('mvr.cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'numpy', 'numba') if m in sys.modules))")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, check=True)
    elapsed = time.perf_counter() - t
    assert "HEAVY []" in out.stdout, out.stdout
    for name in COMMANDS:
        assert f"  {name} " in out.stdout
    # 0.5 s on a quiet machine; generous here, as the test machine may be loaded
    assert elapsed < 10, elapsed


@pytest.mark.parametrize("name", list(COMMANDS))
def test_summary_matches_docstring_and_help_has_an_example(name: str) -> None:
    func = load_command(name)
    doc = inspect.getdoc(func) or ""
    assert doc.splitlines()[0] == COMMANDS[name][2]
    r = CliRunner().invoke(app, [name, "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert f"mvr {name}" in r.output.split("Example:", 1)[-1], r.output


def _options(name: str) -> set[str]:
    import typer
    from typer.main import get_command

    single = typer.Typer()
    single.command(name)(load_command(name))
    cmd = get_command(single)
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def test_one_name_per_option() -> None:
    opts = {name: _options(name) for name in COMMANDS}
    for name in ("index", "eval", "demo"):  # where the command writes
        assert "--out" in opts[name] and "-o" in opts[name], name
    assert "--output" in opts["eval"]  # kept as an alias
    for name in ("index", "add", "eval", "demo"):
        assert {"--progress", "--no-progress"} <= opts[name], name
    for name in COMMANDS:
        if name != "serve":  # serve has uvicorn's --log-level
            assert {"--quiet", "-q", "--verbose", "-v"} <= opts[name], name
    for name in ("search", "demo"):
        assert {"--candidates", "-n", "-k"} <= opts[name], name
