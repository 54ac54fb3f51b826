"""The layout shows the architecture, and a test keeps it so.

A stage imports only ``pipeline.core``, ``config``, ``manifest``, ``errors``, its own
subpackage and its check registry, never another stage; ``pipeline.core`` imports no
stage and nothing above it (the model definitions, ``pipeline.models``, are a leaf below
it); nothing imports the CLI.
"""

from __future__ import annotations

import pytest

from pipeline import codegraph
from pipeline.stages import STAGES

SHARED = ("pipeline.core", "pipeline.config", "pipeline.manifest", "pipeline.errors")
STAGE_MODULES = [s.module for s in STAGES] + ["pipeline.scrape", "pipeline.publish"]
# a stage's own parts: its subpackage, and the filter's check registry
OWN = {"pipeline.scrape": ("pipeline.scrape",), "pipeline.filter": ("pipeline.checks",),
       # the model stages: the zoo, and the dataset reader trainers use outside gemcurate too
       "pipeline.train": ("pipeline.models", "pipeline.dataset"),
       "pipeline.evaluate": ("pipeline.models", "pipeline.dataset")}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _modules_of(package: str) -> list[str]:
    root = codegraph.BASE.joinpath(*package.split("."))
    out = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(codegraph.BASE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


@pytest.mark.parametrize("stage", STAGE_MODULES)
def test_a_stage_imports_only_shared_modules_and_its_own_parts(stage):
    allowed = SHARED + OWN.get(stage, ()) + ((stage,) if stage == "pipeline.scrape" else ())
    modules = _modules_of(stage) if stage == "pipeline.scrape" else [stage]
    for m in modules:
        bad = sorted(i for i in codegraph.direct_imports(m) if not _within(i, allowed))
        assert not bad, f"{m} imports {bad}: a stage may import only {allowed}"


def test_core_imports_no_stage_and_nothing_above_it():
    # the model definitions are a leaf library below core (core.embedding runs Lite0)
    allowed = ("pipeline.core", "pipeline.config", "pipeline.manifest", "pipeline.errors",
               "pipeline.models")
    for m in _modules_of("pipeline.core"):
        bad = sorted(i for i in codegraph.direct_imports(m) if not _within(i, allowed))
        assert not bad, f"{m} imports {bad}"


def test_the_models_are_a_leaf_library():
    for m in _modules_of("pipeline.models"):
        bad = sorted(i for i in codegraph.direct_imports(m)
                     if not _within(i, ("pipeline.models", "pipeline.config", "pipeline.errors")))
        assert not bad, f"{m} imports {bad}"


def test_the_check_registry_and_the_storefront_import_no_stage():
    for pkg, allowed in (("pipeline.checks", ("pipeline.checks", "pipeline.core", "pipeline.errors")),
                         ("pipeline.storefront", ("pipeline.storefront", *SHARED))):
        for m in _modules_of(pkg):
            bad = sorted(i for i in codegraph.direct_imports(m) if not _within(i, allowed))
            assert not bad, f"{m} imports {bad}"


def test_nothing_imports_the_cli():
    for m in _modules_of("pipeline"):
        if m != "pipeline.cli":
            assert "pipeline.cli" not in codegraph.direct_imports(m), f"{m} imports pipeline.cli"


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
    assert "pipeline.core.groups" in codegraph.closure_modules("pipeline.split")
    assert "pipeline.dedupe" not in codegraph.closure_modules("pipeline.split")
    assert "pipeline.checks" in codegraph.closure_modules("pipeline.filter")
    assert "pipeline.checks" not in codegraph.closure_modules("pipeline.crop")
    files = {p.as_posix() for p in codegraph.closure("pipeline.filter")}
    assert {"pipeline/checks/__init__.py", "pipeline/checks/hand.py"} <= files
    assert "pipeline/core/__init__.py" not in files  # a docstring only: runs no code
