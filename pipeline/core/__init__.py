"""What the stages share: atomic writes, the image store, image I/O, the process pool,
result caches, stage I/O, the SQL engine factory, annotator decisions, groups and
hashing, review flags, plots and the validation gate.

Nothing here imports a stage. A stage imports ``pipeline.core``, ``pipeline.config``,
``pipeline.manifest``, ``pipeline.errors``, its own subpackage and its check registry,
never another stage (``tests/test_layout.py`` keeps it so).
"""
