"""gemcurate: scheduled, versioned, validated image datasets from online catalogs.

The folders are the layers, each importing only those listed before it:

* ``core/``       the shared contract (config, manifest, errors) and what stages share
* ``models/``     network definitions and offline weight readers (a leaf library)
* ``synthetic/``  drawn product photos, certificates and hands (the demo store's, and
                  the filter head's training bank)
* ``stages/``     one module or package per pipeline stage; no stage imports another
* ``project/``    a project folder: init, dvc.yaml, the code lock, verify
* ``demo/``       the bundled storefront (imports no stage)
* ``interfaces/`` how people and schedulers drive it: the CLI, the review app, Airflow;
                  nothing imports it

``dataset.py`` is the public reader trainers import. ``tests/test_layout.py`` keeps the rules.
"""

# Where the modules of releases before the layered layout (2026-12-07) live now, so that a
# DAG file an older ``gemcurate init`` wrote (``from pipeline import notify, orchestration``)
# keeps working. ``gemcurate init`` writes the current imports.
_MOVED = {
    "config": "pipeline.core.config", "manifest": "pipeline.core.manifest",
    "errors": "pipeline.core.errors", "orchestration": "pipeline.interfaces.airflow.orchestration",
    "notify": "pipeline.interfaces.airflow.notify", "codegraph": "pipeline.project.codegraph",
}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib
        import warnings

        warnings.warn(f"pipeline.{name} is {_MOVED[name]} now", DeprecationWarning, stacklevel=2)
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
