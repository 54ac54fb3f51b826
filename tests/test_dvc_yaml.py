"""dvc.yaml sees every line of code a stage runs: its deps cover the stage's import closure.

The closure is computed from the source (pipeline/project/codegraph.py); a missing file here
means ``dvc repro`` could call a dataset up to date that the current code would build
differently. The end-to-end proof (touch a helper, ``dvc status`` names exactly its
stages) is in tests/e2e/test_dvc_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline import project
from pipeline.project import codegraph
from pipeline.stages.registry import BY_NAME, DVC_STAGES
from tests.helpers import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", [s.name for s in DVC_STAGES])
def test_deps_cover_the_import_closure(stage):
    deps = DVC["stages"][stage]["deps"]
    missing = [p.as_posix() for p in codegraph.closure(BY_NAME[stage].module)
               if not covered(p.as_posix(), deps)]
    assert not missing, f"dvc.yaml stage {stage!r} does not list {missing} (run `gemcurate dvc-yaml`)"
    # and lists no code it does not run (an edit there would rerun it for nothing)
    code = {p.as_posix() for p in project.stage_code(BY_NAME[stage])}
    extra = [d for d in deps if d.startswith("pipeline/") and d not in code]
    assert not extra, f"dvc.yaml stage {stage!r} lists {extra}, which it does not import or read"
    # the package data a stage reads (the shipped junk head) is listed too
    assert all(d in deps for d in BY_NAME[stage].code_data)


def test_dvc_yaml_is_the_generated_one():
    assert (ROOT / "dvc.yaml").read_text() == project.render_dvc_yaml("files"), \
        "dvc.yaml differs from pipeline/stages/registry.py: run `gemcurate dvc-yaml`"


def test_every_params_key_exists_and_no_stage_reads_workers_or_progress():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for s in DVC_STAGES:
        for key in s.params:
            node = params
            for part in key.split("."):
                assert part in node, f"{s.name}: params key {key} not in params.yaml"
                node = node[part]
            assert key.split(".")[-1] not in ("workers", "progress")


def test_lock_mode_takes_the_code_digest_as_a_param():
    dvc = yaml.safe_load(project.render_dvc_yaml("lock"))
    for s in DVC_STAGES:
        st = dvc["stages"][s.name]
        assert {".gemcurate/code.yaml": [s.name]} in st["params"]
        assert not any(d.startswith("pipeline/") for d in st["deps"])


def test_a_digest_changes_with_the_code_and_only_for_the_stages_that_run_it(tmp_path, monkeypatch):
    # a copy of the package where core/groups.py (split's union-find) is edited
    import shutil

    src = tmp_path / "pipeline"
    shutil.copytree(codegraph.SRC, src, ignore=shutil.ignore_patterns("__pycache__"))
    before = {s.name: codegraph.digest(project.stage_code(s)) for s in DVC_STAGES}
    monkeypatch.setattr(codegraph, "BASE", tmp_path)
    (src / "core" / "groups.py").write_text((src / "core" / "groups.py").read_text() + "\n# edited\n")
    after = {s.name: codegraph.digest(project.stage_code(s)) for s in DVC_STAGES}
    changed = {k for k in before if before[k] != after[k]}
    users = {s.name for s in DVC_STAGES
             if Path("pipeline/core/groups.py") in project.stage_code(s)}
    assert changed == users == {"dedupe", "labels", "split", "augment"}


def test_every_field_of_a_stage_section_is_a_param_of_its_stage_unless_runtime():
    """Which params change a stage's outputs is said once, on the field: a field nobody
    marked shapes its own section's stage (so `dvc repro` reruns it), `workers`/`progress`
    are runtime only, and the per-image caches key on the same fields."""
    import dataclasses

    from pipeline.core.config import Params, shaped_stages
    from pipeline.core.resultcache import params_key

    stage_names = {s.name for s in DVC_STAGES}
    p = Params()
    for sf in dataclasses.fields(Params):
        if sf.name not in stage_names:
            continue
        section = getattr(p, sf.name)
        for f in dataclasses.fields(section):
            key = f"{sf.name}.{f.name}"
            shaped = shaped_stages(sf.name, f)
            if f.name in ("workers", "progress", "search_threads"):
                assert shaped == () and key not in BY_NAME[sf.name].params
                assert f.name not in params_key(section)
                continue
            assert shaped, f"{key}: shapes no stage (mark it RUNTIME if it truly changes nothing)"
            for st in shaped:
                assert key in BY_NAME[st].params, f"{key} shapes {st} but is not its DVC param"
            assert f.name in params_key(section)
        # and dvc.yaml says the same
        dvc_params = [k for k in DVC["stages"][sf.name]["params"] if isinstance(k, str)]
        assert dvc_params == list(BY_NAME[sf.name].params)


def test_a_new_field_becomes_a_param_of_its_stage_without_a_list_to_edit(monkeypatch):
    import dataclasses

    from pipeline.core import config

    @dataclasses.dataclass(frozen=True)
    class Crop2(config.CropParams):
        sharpen: float = 0.0  # added by someone who never heard of dvc.yaml

    @dataclasses.dataclass(frozen=True)
    class Params2(config.Params):
        crop: Crop2 = dataclasses.field(default_factory=Crop2)

    monkeypatch.setattr(config, "Params", Params2)
    assert "crop.sharpen" in BY_NAME["crop"].params and "crop.sharpen" in BY_NAME["evaluate"].params
    assert "crop.sharpen" not in BY_NAME["augment"].params
