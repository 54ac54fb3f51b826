"""The layout shows the architecture, and a test keeps it so.

The folders of ``pipeline/`` are the layers (``pipeline/__init__.py`` lists them). Each may
import only what the rules below allow: ``core`` imports only itself and ``models``; the
models and the drawn images are leaves; a stage imports the shared layers and its own
package, never another stage; the demo store imports no stage; nothing imports
``interfaces``; and no module imports itself back through a cycle.
"""

from __future__ import annotations

import pytest

from pipeline.project import codegraph
from pipeline.stages.registry import STAGES

LAYERS = ("core", "models", "synthetic", "stages", "project", "demo", "interfaces")
# what each folder may import besides itself
RULES = {
    "pipeline.core": ("pipeline.models",),
    "pipeline.models": ("pipeline.core.errors", "pipeline.core.config"),
    "pipeline.synthetic": ("pipeline.core",),
    "pipeline.stages": ("pipeline.core", "pipeline.models", "pipeline.synthetic", "pipeline.dataset"),
    "pipeline.project": ("pipeline.core", "pipeline.stages"),
    "pipeline.demo": ("pipeline.core", "pipeline.synthetic"),
    "pipeline.dataset": ("pipeline.core",),
}
# which stages may import another: predict cuts and scores a photo exactly as evaluate does
STAGE_PEERS = {"pipeline.stages.predict": ("pipeline.stages.evaluate",)}
# who may use the drawn images and the dataset reader among the stages
STAGE_EXTRAS = {"pipeline.synthetic": ("pipeline.stages.filter.head",),
                "pipeline.dataset": ("pipeline.stages.train", "pipeline.stages.evaluate")}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _modules_of(package: str) -> list[str]:
    root = codegraph.BASE.joinpath(*package.split("."))
    if root.with_suffix(".py").is_file():
        return [package]
    out = []
    for f in sorted(root.rglob("*.py")):
        if "templates" in f.parts:  # files init writes into a project (the DAG file), not modules
            continue
        rel = f.relative_to(codegraph.BASE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def _stage_of(module: str) -> str:
    """``pipeline.stages.scrape.crawler`` → ``pipeline.stages.scrape``."""
    return ".".join(module.split(".")[:3])


def test_ls_pipeline_shows_the_layers():
    entries = {p.name for p in codegraph.BASE.joinpath("pipeline").iterdir()
               if not p.name.startswith(("_", ".")) and p.name != "py.typed"}
    assert entries == {*LAYERS, "dataset.py", "weights"}, entries
    for layer in LAYERS:
        doc = codegraph.BASE.joinpath("pipeline", layer, "__init__.py").read_text(encoding="utf-8")
        assert doc.lstrip().startswith('"""') and "import" in doc, \
            f"{layer}/__init__.py: say what it is for and what it may import"


@pytest.mark.parametrize("folder", sorted(RULES))
def test_each_folder_imports_only_what_its_rule_allows(folder):
    for m in _modules_of(folder):
        allowed = (folder, *RULES[folder])
        bad = []
        for i in codegraph.direct_imports(m):
            if not _within(i, allowed):
                bad.append(i)
            elif folder == "pipeline.stages" and _within(i, ("pipeline.stages",)):
                own = _stage_of(m)
                peers = (own, "pipeline.stages.registry", *STAGE_PEERS.get(own, ()))
                if not _within(i, peers):
                    bad.append(i)  # another stage
            elif folder == "pipeline.stages":
                for extra, users in STAGE_EXTRAS.items():
                    if _within(i, (extra,)) and not _within(m, users):
                        bad.append(i)
        assert not bad, f"{m} imports {sorted(bad)}: {folder} may import only {allowed}"


def test_the_stage_registry_imports_no_stage():
    assert all(not _within(i, ("pipeline.stages",)) or i == "pipeline.stages.registry"
               for i in codegraph.direct_imports("pipeline.stages.registry"))


def test_nothing_outside_interfaces_imports_them():
    for m in _modules_of("pipeline"):
        if _within(m, ("pipeline.interfaces",)) or m == "pipeline.__main__":
            continue
        bad = [i for i in codegraph.direct_imports(m) if _within(i, ("pipeline.interfaces",))]
        assert not bad, f"{m} imports {bad}"


def test_no_import_cycle():
    graph = {m: {i for i in codegraph.direct_imports(m) if i.startswith("pipeline")}
             for m in _modules_of("pipeline")}
    # a package's __init__ that imports its own submodules is not a cycle between modules
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for i in graph.get(m, ()):
            if i == m or m.startswith(i + ".") or i.startswith(m + "."):
                continue
            if state.get(i) == 1:
                raise AssertionError("import cycle: " + " → ".join([*stack[stack.index(i):], i]))
            if i in graph and i not in state:
                visit(i)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_every_stage_module_has_run_and_main():
    import importlib
    import inspect

    for s in STAGES:
        mod = importlib.import_module(s.module)
        run = inspect.signature(mod.run)
        names = list(run.parameters)
        assert names[:2] == ["df", "params"], f"{s.module}.run{run}: run(manifest, params, ...)"
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in list(run.parameters.values())[2:]), \
            f"{s.module}.run: everything after (manifest, params) is injected by keyword"
        assert callable(mod.main)


def test_the_closure_follows_lazy_and_from_imports():
    # split needs UnionFind from core.groups; validate imports core.validation; nothing of dedupe
    assert "pipeline.core.groups" in codegraph.closure_modules("pipeline.stages.split")
    assert "pipeline.stages.dedupe" not in codegraph.closure_modules("pipeline.stages.split")
    assert "pipeline.stages.filter.checks" in codegraph.closure_modules("pipeline.stages.filter")
    assert "pipeline.stages.filter.checks" not in codegraph.closure_modules("pipeline.stages.crop")
    files = {p.as_posix() for p in codegraph.closure("pipeline.stages.filter")}
    assert {"pipeline/stages/filter/checks/__init__.py", "pipeline/stages/filter/checks/hand.py"} <= files
    assert "pipeline/core/__init__.py" not in files  # a docstring only: runs no code


def test_a_dag_file_written_before_the_layers_still_imports(recwarn):
    # what `gemcurate init` wrote before 2026-12-07: the DAG file in a user's project
    from pipeline import notify, orchestration  # type: ignore[attr-defined]

    assert orchestration.__name__ == "pipeline.interfaces.airflow.orchestration"
    assert notify.__name__ == "pipeline.interfaces.airflow.notify"
    assert any("pipeline.interfaces.airflow" in str(w.message) for w in recwarn)
    with pytest.raises(ImportError):
        from pipeline import no_such_module  # type: ignore[attr-defined]  # noqa: F401
