"""Fails when a test, bench or example runs an interpreter or pip by name.

A helper program started as bare `python3` (or `pip`) runs whatever that name
finds on the machine, not the virtual environment the setup built: it passed
once only because a package had been installed there by hand. Helpers run with
`sys.executable` instead. Checked on the syntax tree, so comments and prose do
not count; a string literal used as a program name does.

Usage: python scripts/check_interpreters.py [FOLDER...]   (default: tests bench examples)
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

BARE = re.compile(r"^(python(\d+(\.\d+)?)?|pip\d*(\.\d+)?)$")
"""Program names that resolve through PATH to an interpreter or pip."""

SHELL = re.compile(r"(^|[;&|(`]\s*|\bexec\s+)(python(\d+(\.\d+)?)?|pip\d*)\s")
"""The same names at the start of a shell command inside a string."""


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    # Docstrings and other bare string statements are prose, not commands.
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value.strip()
            if BARE.match(text) or SHELL.search(text):
                found.append(f"{path}:{node.lineno}: runs {text.split()[0]!r} by name; use sys.executable")
    return found


def main(folders: list[str]) -> int:
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.py")):
            found += offences(path)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["tests", "bench", "examples"]))
