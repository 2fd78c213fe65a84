"""The ``storyreasoning check`` command, in two faces that behave the same.

:func:`register` declares it to typer (its help, its option checks and its errors).
:func:`quick` runs the common, simple invocations (``check FILE [IMAGES] [--json]
[--images N] [--kind K] [--strict]``) without typer, pydantic or rich, so a script that
checks many outputs does not pay for them on every call; anything else (``--help``, a
value it does not plainly accept, an unknown option) is left to typer, which says what
is wrong. ``tests/test_cli_startup.py`` runs both faces on the same inputs and compares
their output and exit status.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class Kind(str, Enum):
    auto = "auto"
    output = "output"
    cot = "cot"
    story = "story"


def register(app) -> None:
    import typer

    from ..settings import given_path

    def check(
        output_file: Path = typer.Argument(
            ...,
            help="A model output (<think> CoT </think> story), a CoT file or a story file; '-' reads standard input.",
            show_default=False,
            parser=lambda text: given_path(text, "OUTPUT_FILE"),
            metavar="OUTPUT_FILE",
        ),
        images: list[Path] = typer.Argument(
            None,
            help="The images the output describes, in order: their number and sizes are checked.",
            show_default=False,
            parser=lambda text: given_path(text, "IMAGES"),
            metavar="IMAGES",
        ),
        n_images: int | None = typer.Option(
            None,
            "--images",
            "-n",
            min=1,
            help="Number of images, when the image files are not given.",
            show_default=False,
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the parse as one JSON object instead of the summary.", metavar=" "
        ),
        kind: Kind = typer.Option(Kind.auto, "--kind", help="What the file holds; auto detects it."),
        strict: bool = typer.Option(
            False,
            "--strict",
            help="Also require non-empty Characters and Objects tables (the original validate_dataset rule).",
            metavar=" ",
        ),
    ) -> None:
        """Parse a model output and say whether it is well-structured.

        Prints entities per image, story segments and tags, and every finding of the
        parser and the validator. Exit status: 0 well-structured, 1 not, 2 usage error.
        """
        from .commands import run_check

        code = run_check(
            output_file, images or [], n_images=n_images, as_json=as_json, kind=kind.value, strict=strict
        )
        raise typer.Exit(code)

    app.command("check")(check)


_FLAGS = {"--json": "as_json", "--strict": "strict"}
_VALUES = {"--images": "n_images", "-n": "n_images", "--kind": "kind"}


def quick_args(args: list[str]) -> dict | None:
    """The arguments of ``check`` when every one is plain (what typer would read the same way), else None.

    Plain: a path that does not start with ``-`` (or is ``-``, standard input), ``--json``,
    ``--strict``, ``--images N``/``-n N``/``--images=N`` with N a whole number from 1,
    ``--kind K``/``--kind=K`` with K one of the kinds; each option at most once, and a
    file to check.
    """
    paths: list[str] = []
    given: dict = {}
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "-" or (token and not token.startswith("-")):
            paths.append(token)
            continue
        flag, equals, value = token.partition("=")
        name = _FLAGS.get(flag) if not equals else None
        if name is not None:
            value = True
        else:
            name = _VALUES.get(flag)
            if name is None or (equals and flag == "-n"):
                return None  # --help, --, -n3, an unknown option: typer's to read or refuse
            if not equals:
                if i == len(args):
                    return None
                value = args[i]
                i += 1
            if name == "n_images":
                if not (value.isascii() and value.isdigit() and value[0] != "0"):
                    return None
                value = int(value)
            elif value not in Kind.__members__:
                return None
        if name in given:
            return None
        given[name] = value
    if not paths:
        return None
    return {
        "path": Path(paths[0]),
        "images": [Path(p) for p in paths[1:]],
        "n_images": given.get("n_images"),
        "as_json": given.get("as_json", False),
        "kind": given.get("kind", "auto"),
        "strict": given.get("strict", False),
    }


def quick(args: list[str]) -> int | None:
    """Run ``check ARGS`` without typer when :func:`quick_args` can read them; None when it cannot."""
    parsed = quick_args(args)
    if parsed is None:
        return None
    from .commands import run_check

    path = parsed.pop("path")
    images = parsed.pop("images")
    return run_check(path, images, **parsed)
