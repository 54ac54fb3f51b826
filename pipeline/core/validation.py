"""The validation gate: what ``validate`` leaves behind and what export and publish trust.

``gemcurate validate`` writes ``<data_dir>/validate/result.json`` with the sha256 of
the augment manifest it checked. Export and publish both start at
:func:`passed_result`: neither may ship a dataset whose validation failed, never
ran, or ran on an augment manifest that has changed since.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core import manifest
from pipeline.core.blobstore import sha256_file
from pipeline.core.errors import UserError


class ValidationFailed(UserError, RuntimeError):
    """A suite failed, or the result is missing or stale; the message says which."""


def result_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "validate" / "result.json"


def summary_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "validate" / "summary.txt"


def manifest_digest(data_dir: str | Path) -> str:
    """sha256 of the augment manifest: what a validation result is about."""
    return sha256_file(manifest.manifest_path(data_dir, "augment"))


def passed_result(data_dir: str | Path) -> dict:
    """The validation result, if it passed and is for the current augment manifest.

    Raises:
        ValidationFailed: with the reason (and the failure summary, if any).
    """
    path = result_path(data_dir)
    if not path.exists():
        raise ValidationFailed("no validation result (run `gemcurate validate` or `dvc repro`)")
    try:
        result = json.loads(path.read_text())
        if not isinstance(result, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ValidationFailed(f"{path} is unreadable ({exc}); run `gemcurate validate` again") from None
    if not result.get("success"):
        summary = summary_path(data_dir)
        raise ValidationFailed("validation failed (see validate/summary.txt)\n"
                               + (summary.read_text() if summary.exists() else ""))
    if result.get("manifest_sha256") != manifest_digest(data_dir):
        raise ValidationFailed("validation is stale: the augment manifest changed since "
                               "(run `gemcurate validate` or `dvc repro`)")
    return result
