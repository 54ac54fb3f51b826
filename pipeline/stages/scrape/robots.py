"""robots.txt per RFC 9309, plus the ``Crawl-delay`` and ``Request-rate`` extensions.

The standard library's parser ignores fractional crawl delays and ``*``/``$``
wildcards; this one handles both, picks the most specific user-agent group and
applies the longest-match rule (``Allow`` wins ties).

Example:
    >>> r = Robots.parse("User-agent: *\\nCrawl-delay: 0.5\\nDisallow: /cart")
    >>> r.allowed("/cart/add", "gemcurate"), r.crawl_delay("gemcurate")
    (False, 0.5)
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


@dataclass
class _Group:
    agents: list[str] = field(default_factory=list)
    rules: list[tuple[bool, str]] = field(default_factory=list)  # (allow, pattern)
    delay: float | None = None


def _compile(pattern: str) -> re.Pattern:
    anchored = pattern.endswith("$")
    body = re.escape(pattern.rstrip("$")).replace(r"\*", ".*")
    return re.compile(body + ("$" if anchored else ""))


@dataclass
class Robots:
    """Parsed robots.txt."""

    groups: list[_Group] = field(default_factory=list)
    allow_all: bool = False
    disallow_all: bool = False
    sitemaps: list[str] = field(default_factory=list)  # the Sitemap: lines (any group)

    @classmethod
    def parse(cls, text: str) -> Robots:
        groups: list[_Group] = []
        sitemaps: list[str] = []
        cur: _Group | None = None
        last_was_agent = False
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if ":" not in line:
                continue
            key, value = (p.strip() for p in line.split(":", 1))
            key = key.lower()
            if key == "sitemap":
                if value and len(sitemaps) < 100:
                    sitemaps.append(value)
                continue
            if key == "user-agent":
                if cur is None or not last_was_agent:
                    cur = _Group()
                    groups.append(cur)
                cur.agents.append(value.lower())
                last_was_agent = True
                continue
            last_was_agent = False
            if cur is None:
                continue
            if key in ("allow", "disallow"):
                if value or key == "allow":
                    cur.rules.append((key == "allow", value))
            elif key == "crawl-delay":
                with contextlib.suppress(ValueError):
                    cur.delay = float(value)
            elif key == "request-rate":
                m = re.match(r"(\d+)\s*/\s*(\d+)\s*([smh]?)", value)
                if m:
                    n, t = int(m.group(1)), int(m.group(2))
                    t *= {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(3)]
                    if n > 0:
                        cur.delay = max(cur.delay or 0.0, t / n)
        return cls(groups, sitemaps=sitemaps)

    def _group(self, agent: str) -> _Group | None:
        token = agent.lower().split("/")[0].strip()
        best, best_len = None, -1
        for g in self.groups:
            for a in g.agents:
                if a != "*" and a in token and len(a) > best_len:
                    best, best_len = g, len(a)
        if best is None:
            best = next((g for g in self.groups if "*" in g.agents), None)
        return best

    def allowed(self, url: str, agent: str) -> bool:
        """Whether ``agent`` may fetch ``url`` (a path or an absolute URL)."""
        if self.disallow_all:
            return False
        if self.allow_all:
            return True
        g = self._group(agent)
        if g is None:
            return True
        parts = urlsplit(url)
        path = unquote(parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        best_len, verdict = -1, True
        for allow, pattern in g.rules:
            if pattern and _compile(pattern).match(path):
                n = len(pattern)
                if n > best_len or (n == best_len and allow):
                    best_len, verdict = n, allow
        return verdict

    def crawl_delay(self, agent: str) -> float | None:
        g = self._group(agent)
        return None if g is None else g.delay
