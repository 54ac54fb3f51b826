"""The pipeline's stages, one module (or package) each, and their registry (``registry.py``).

``scrape/`` and ``filter/`` are packages (the crawler's parts; the filter's checks and its
learned head). ``predict`` cuts and scores a photo as ``evaluate`` does, so it may import it.

May import: ``pipeline.core``, ``pipeline.models``, ``pipeline.dataset`` (train, evaluate) and
``pipeline.synthetic`` (the filter head's training bank). Never another stage.
"""
