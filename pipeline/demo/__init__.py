"""The bundled demo storefront: a catalog (generated or from folders), four platform layouts,
a rate-limited HTTP server with faults, and the scoring of curation against its truth.

May import: ``pipeline.core`` and ``pipeline.synthetic``; no stage.
"""
