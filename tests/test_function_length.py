"""Functions a newcomer can hold in their head: none over about 60 lines without a reason
written next to it (a ``# long: …`` comment in the comment block right above its ``def``)."""

from __future__ import annotations

import ast

from pipeline.project import codegraph

LIMIT = 60


def long_functions() -> list[tuple[str, str, int, bool]]:
    out = []
    for f in sorted(codegraph.BASE.joinpath("pipeline").rglob("*.py")):
        lines = f.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = node.end_lineno - node.lineno + 1
                if size > LIMIT:
                    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                    block, i = [], first - 2
                    while i >= 0 and lines[i].strip().startswith("#"):
                        block.append(lines[i].strip())
                        i -= 1
                    rel = f.relative_to(codegraph.BASE).as_posix()
                    out.append((rel, node.name, size, any(b.startswith("# long:") for b in block)))
    return out


def test_every_long_function_says_why():
    unexplained = [f"{path}:{name} ({size} lines)" for path, name, size, ok in long_functions() if not ok]
    assert not unexplained, ("split these, or write why they are long on the line above their def "
                             "(# long: …):\n  " + "\n  ".join(unexplained))
