"""``python -m pipeline …`` is ``gemcurate …``."""

from pipeline.interfaces.cli import main

raise SystemExit(main())
