"""Secrets out of log records before they are captured or exported; off until a pattern is added, and a
record is searched with regexes only when it contains a pattern's literals (docs/internals.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes

REDACTED = "[REDACTED]"
MAX_DEPTH = 10  # containers nested deeper than this are replaced whole: never a secret let through
_CONTAINERS = (list, tuple, Mapping)
_SCALARS = frozenset({int, float, bool, bytes, type(None)})

# An unquoted value runs to whitespace, a quote, a comma or a closing bracket; a quoted-string inside
# it (Digest's `realm="…"`) is part of it. A quoted value runs to its closing quote.
_CHAR = r"""[^\s"',)\]}>&]"""
_QSTRING = r'''"(?:\\.|[^"\\\r\n])*"'''
_RUN = rf"(?:{_QSTRING}|{_CHAR})+"
_TOKEN = r"[A-Za-z0-9!#$%*+.^_`|~-]+"
_SCHEME = r"[A-Za-z][A-Za-z0-9!#$%*+.^_`|~-]*"
_QUOTED = r"""(?<=")(?:\\.|[^"\\\r\n])+|(?<=')(?:\\.|[^'\\\r\n])+"""


def _keyed(name: str, unquoted: str) -> str:
    """`name: value`, `name=value`, `'name': 'value'`, `"name": "value"`: the whole value goes."""
    return (
        rf"""(?i)(?P<keep>["']?{name}["']?[ \t]*[:=][ \t]*["']?)(?!\[REDACTED\])"""
        rf"""(?:{_QUOTED}|(?<!["']){unquoted})"""
    )


# RFC 7235 credentials: a scheme word, then a token68 or auth-params (`Digest a="1", b=2`).
_AUTHORIZATION = _keyed("authorization", rf"(?:{_SCHEME}[ \t]+)?{_RUN}(?:[ \t]*,[ \t]*{_TOKEN}[ \t]*=[ \t]*{_RUN})*")
_API_KEY = _keyed("api[_-]?key", _RUN)
SECRET_PATTERNS = (
    r"sk-[A-Za-z0-9_\-]{8,}",  # OpenAI-style API keys
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*",
    _AUTHORIZATION,  # any scheme: Basic, Bearer, Digest, Token, ApiKey, AWS4-HMAC-SHA256, …
    _API_KEY,  # x-api-key, api_key, api-key, OPENAI_API_KEY
)
# In structured values the key says it: {"authorization": "Basic …"}, http.request.header.authorization.
_SECRET_KEYS = {_AUTHORIZATION: r"authorization", _API_KEY: r"api[_-]?key"}

# Literals a match of each built-in pattern must contain (folded: in the lowercased text). Testing
# for them with `in` is a cheap exact gate in front of the regexes, which cost ~30 ns a character.
_GATES: dict[str, tuple[bool, tuple[str, ...]]] = {
    SECRET_PATTERNS[0]: (False, ("sk-",)),
    SECRET_PATTERNS[1]: (True, ("bearer",)),
    _AUTHORIZATION: (True, ("authorization",)),
    _API_KEY: (True, ("api", "key")),
}
# The only non-ASCII characters IGNORECASE matches to ASCII letters (see the `re` docs), folded
# before lowercasing so that a folded literal is found whenever the regex could match.
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_ESCAPED_LITERAL = re.compile(r"(?:\\[^A-Za-z0-9]|[^\\.^$*+?{}\[\]|()])+")  # what re.escape() returns


def _replace(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return (keep or "") + REDACTED


def _gate(pattern: re.Pattern[str]) -> tuple[bool, tuple[str, ...]] | None:
    """(folded, literals) that every match of `pattern` contains, when known."""
    text = pattern.pattern
    if not isinstance(text, str) or pattern.flags != re.compile(text).flags:
        return None
    if text in _GATES:
        return _GATES[text]
    if not pattern.flags & (re.IGNORECASE | re.VERBOSE) and _ESCAPED_LITERAL.fullmatch(text):
        return False, (re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL),)
    return None


class _Compiled:
    """What one tuple of patterns compiles to; rebuilt when `Redactor.patterns` is replaced."""

    def __init__(self, patterns: tuple[re.Pattern[str], ...]) -> None:
        self.patterns = patterns
        exact: list[tuple[str, ...]] = []
        folded: list[tuple[str, ...]] = []
        searches: list[Callable[[str], object]] = []
        for pattern in patterns:
            gate = _gate(pattern)
            if gate is None:
                searches.append(pattern.search)
            else:
                (folded if gate[0] else exact).append(gate[1])
        self.exact, self.folded, self.searches = tuple(exact), tuple(folded), tuple(searches)
        keys = [_SECRET_KEYS[p.pattern] for p in patterns if p.pattern in _SECRET_KEYS]
        self.secret_key: Callable[[str], object] | None
        self.secret_key = re.compile(rf"(?i)(?:{'|'.join(keys)})\Z").search if keys else None
        self._key_cache: dict[str, bool] = {}

    def gated(self, text: str) -> bool:
        """Whether `text` holds the literals of some gated pattern (never False when one matches)."""
        for literals in self.exact:  # loops, not all(): this runs for every record
            for literal in literals:
                if literal not in text:
                    break
            else:
                return True
        if self.folded:
            low = text.lower() if text.isascii() else text.translate(_FOLD).lower()
            for literals in self.folded:
                for literal in literals:
                    if literal not in low:
                        break
                else:
                    return True
        return False

    def hit(self, text: str) -> bool:
        """Whether some pattern may match `text`; False means none does."""
        if self.gated(text):
            return True
        return any(search(text) is not None for search in self.searches)

    def any_hit(self, texts: list[str]) -> bool:
        """`hit` for many strings at once: one gate over the joined text (a literal found in one
        string is found in the join), the ungated regexes string by string (anchors stay exact)."""
        if self.gated("\n".join(texts)):
            return True
        if not self.searches:
            return False
        return any(search(text) is not None for search in self.searches for text in texts)

    def is_secret_key(self, key: object) -> bool:
        if self.secret_key is None or not isinstance(key, str):
            return False
        known = self._key_cache.get(key)
        if known is None:
            if len(self._key_cache) >= 4096:
                self._key_cache = {}
            known = self._key_cache[key] = self.secret_key(key) is not None
        return known

    def text(self, value: str) -> str:
        if not self.hit(value):
            return value
        clean = value
        for pattern in self.patterns:
            clean = pattern.sub(_replace, clean)
        return value if clean == value else clean

    def value(self, value: Any, secret: bool, depth: int) -> Any:
        """`value` with its strings redacted, recursively; the same object when nothing changed.
        Under a secret key (a dict key, or the name in a (name, value) pair) every string goes whole."""
        if isinstance(value, str):
            return (REDACTED if value else value) if secret else self.text(value)
        if isinstance(value, (list, tuple)):
            if not value:
                return value
            if depth >= MAX_DEPTH:
                return REDACTED
            if len(value) == 2 and not secret and self.is_secret_key(value[0]):  # ("Authorization", "Basic …")
                items = [value[0], self.value(value[1], True, depth + 1)]
            else:
                items = [self.value(item, secret, depth + 1) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, Mapping):
            if not value:
                return value
            if depth >= MAX_DEPTH:
                return REDACTED
            entries = {k: self.value(v, secret or self.is_secret_key(k), depth + 1) for k, v in value.items()}
            if all(entries[k] is v for k, v in value.items()):
                return value
            return entries
        return value  # numbers, booleans, None; bytes are not text and are left alone


class Redactor:
    def __init__(self) -> None:
        self.patterns: tuple[re.Pattern[str], ...] = ()
        self._lock = threading.Lock()
        self._compiled = _Compiled(())

    def _current(self) -> _Compiled:
        patterns = self.patterns  # callers may assign a tuple directly (to restore or reset)
        compiled = self._compiled
        if compiled.patterns is not patterns:
            compiled = self._compiled = _Compiled(patterns)
        return compiled

    def add(self, *patterns: str | re.Pattern[str]) -> None:
        compiled = [p if isinstance(p, re.Pattern) else re.compile(p) for p in patterns]
        with self._lock:
            known = {p.pattern for p in self.patterns}
            fresh = []
            for pattern in compiled:
                if pattern.pattern not in known:
                    known.add(pattern.pattern)
                    fresh.append(pattern)
            self.patterns += tuple(fresh)

    def text(self, value: str) -> str:
        return self._current().text(value)

    def record(self, log_record: Any) -> None:
        """Redact an SDK LogRecord in place: its body and attributes, strings nested in lists,
        tuples and dicts included (exception messages and stack traces too)."""
        compiled = self._current()
        if not compiled.patterns:
            return
        body = log_record.body
        attributes = log_record.attributes
        snapshot: Mapping[str, Any] = {}
        if attributes:
            snapshot = attributes.copy() if isinstance(attributes, (dict, BoundedAttributes)) else dict(attributes)
        # The common case, no secret: one gate over the body and every attribute key and string
        # value (keys too, for `{"authorization": …}`), then nothing to do.
        texts = list(snapshot)
        nested = False
        if type(body) is str:
            texts.append(body)
        elif type(body) not in _SCALARS:
            nested = isinstance(body, _CONTAINERS)
        for value in snapshot.values():
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif kind not in _SCALARS and isinstance(value, _CONTAINERS):  # an ABC check is slow
                nested = True
        if not nested and not compiled.any_hit(texts):
            return
        if isinstance(body, (str, *_CONTAINERS)):
            clean = compiled.value(body, False, 0)
            if clean is not body:
                log_record.body = clean
        changes = {}
        for key, value in snapshot.items():
            if isinstance(value, (str, *_CONTAINERS)):
                clean = compiled.value(value, compiled.is_secret_key(key), 0)
                if clean is not value:
                    changes[key] = clean
        if not changes:
            return
        try:
            for key, clean in changes.items():
                attributes[key] = clean  # the public path: the SDK re-applies its limits
        except TypeError:  # an immutable mapping: replace it rather than let a secret through
            log_record.attributes = {**snapshot, **changes}


redactor = Redactor()


def add_redaction(*patterns: str | re.Pattern[str]) -> None:
    """Redact matches of these regexes (for example `SECRET_PATTERNS`, or `re.escape(api_key)`)
    from every record's message and attributes, in captures and exports alike."""
    redactor.add(*patterns)
