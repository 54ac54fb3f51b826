"""The shared contract and what the stages share.

``config`` (params.yaml → frozen dataclasses), ``manifest`` (every column declared once) and
``errors`` (UserError, ExitCode) are the contract between the layers; beside them atomic
writes, the image store, image I/O, the process pool, result caches, stage I/O, the SQL
engine factory, annotator decisions, groups and hashing, review flags, plots, the crop
algorithm, the probe and the validation gate.

May import: ``pipeline.core`` and ``pipeline.models`` only.
"""
