"""Benchmark scripts (run as ``python -m bench.<name>``); shared helpers below."""

from __future__ import annotations


def param_overrides(items: list[str], section: str | None = None) -> dict[str, dict]:
    """``--set SECTION.KEY=VALUE`` options as params overrides ``{section: {key: value}}``.

    VALUE is YAML (``0.8``, ``true``, ``[a, b]``). With ``section`` given, a bare ``KEY``
    belongs to it and no other section is accepted.

    Raises:
        SystemExit: A malformed item, or a section other than ``section``.
    """
    import yaml

    out: dict[str, dict] = {}
    for item in items:
        key, eq, value = item.partition("=")
        sec, dot, name = key.rpartition(".")
        sec = sec if dot else (section or "")
        if not eq or not name or not sec or (section and sec != section):
            want = f"[{section}.]KEY=VALUE" if section else "SECTION.KEY=VALUE"
            raise SystemExit(f"--set {item!r}: expected {want}")
        try:
            out.setdefault(sec, {})[name] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise SystemExit(f"--set {item!r}: VALUE is not YAML ({exc})") from None
    return out
