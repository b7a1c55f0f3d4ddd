"""The ``mvr`` command line (typer).

This is the application entry point, the one module of ``mvr`` that reaches up
into the stage packages: each command is defined next to the code it drives
(``indexing/_cli.py``, ``serving/_cli.py``, ...) and registered here. Command
modules import heavy libraries (torch, faiss) inside the command bodies, so
``mvr --help`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["app", "main"]

app = typer.Typer(
    name="mvr",
    help="Multi-vector late-interaction retrieval: index, search, serve, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, function, command name)
_COMMANDS = [
    ("indexing._cli", "index_command", "index"),
    ("serving._cli", "search_command", "search"),
    ("serving._cli", "serve_command", "serve"),
    ("serving._eval_cli", "eval_command", "eval"),
    ("serving._demo", "demo_command", "demo"),
]

for _module, _func, _name in _COMMANDS:
    app.command(_name)(getattr(importlib.import_module(_module), _func))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
