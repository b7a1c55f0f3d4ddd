"""The ``mvr`` command line (typer).

This is the application entry point, the one module of ``mvr`` that reaches up
into the stage packages: each command is defined next to the code it drives
(``indexing/_cli.py``, ``serving/_cli.py``, ...) and registered here by name. A
command's module is imported only when that command runs (or shows its help), so
``mvr --help`` imports neither torch nor numpy: the command list below carries each
command's one-line summary (a test checks it against the command's docstring).
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

__all__ = ["app", "main", "COMMANDS"]

# name -> (module, function, one-line summary = the first line of its docstring)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "index": ("indexing._cli", "index_command", "Build (or resume) an index at --out."),
    "add": ("indexing._writer_cli", "add_command", "Add documents to an index as a new segment."),
    "delete": ("indexing._writer_cli", "delete_command",
               "Delete documents by id (searches never return them again)."),
    "compact": ("indexing._writer_cli", "compact_command",
                "Rewrite the live documents into one segment, dropping deleted ones."),
    "info": ("mvr._inspect_cli", "info_command",
             "Show an index: counts, bytes per part, configs, encoder, format version."),
    "verify": ("mvr._inspect_cli", "verify_command",
               "Check every file the manifest lists: present, its size, its SHA-256."),
    "search": ("serving._cli", "search_command",
               "Search an index: prints rank, id, score and a text snippet per result."),
    "serve": ("serving._cli", "serve_command",
              "Serve an index over HTTP: POST /search, /rerank, /explain; GET /health, /stats; "
              "page at /."),
    "eval": ("serving._eval_cli", "eval_command",
             "Evaluate an index against its judgments and its own exhaustive MaxSim."),
    "demo": ("serving._demo", "demo_command",
             "Index the Python standard library's docs, ask a few questions, print recall."),
}


def load_command(name: str) -> Any:
    """The typer command function registered as ``name`` (imports its module)."""
    module, func, _ = COMMANDS[name]
    return getattr(importlib.import_module(module), func)


class _LazyGroup(TyperGroup):
    """A command group that imports a command's module only when it is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(cmd_name)(load_command(cmd_name))
        return typer.main.get_command(single)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # the plain click layout (typer's rich one would build every command to list them)
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        self.format_options(ctx, formatter)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = [(name, summary) for name, (_, _, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="mvr",
    cls=_LazyGroup,
    help=("Multi-vector late-interaction retrieval: index, search, serve, evaluate.\n\n"
          "Example: mvr index corpus.jsonl.gz --out my.mvr && mvr search my.mvr \"a question\"\n\n"
          "Run 'mvr COMMAND --help' for a command's options and an example."),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Multi-vector late-interaction retrieval: index, search, serve, evaluate."""


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
