"""Who wants which subject: the subscription index, free of any transport.

Exact subjects are compared by their full Unicode case fold
(``str.casefold``), so ``"straße.NEWS"`` and ``"STRASSE.news"`` are one
subject. Patterns are compiled with ``regex`` (IGNORECASE | FULLCASE) and
applied with ``.match`` to the subject as published, so a pattern is anchored
at the subject's start, as in Pyro3, and ``^stra.e`` matches ``straße``.

Keys are opaque strings naming subscribers. The index keeps forward maps
(subject -> keys, pattern -> keys) and the reverse map (key -> its subjects and
patterns), so removing one subscriber costs in proportion to its own
subscriptions. Matching goes through a bounded result cache (invalidated on
every change) and, on a miss, a literal-prefix prefilter that skips patterns
which cannot match.
"""
from __future__ import annotations

import collections.abc as c
import threading
import time
import typing as t

import regex

from .subjects import fold

__all__ = ["SubscriptionIndex", "fold", "literal_prefix", "PATTERN_FLAGS"]

#: flags every pattern is compiled with
PATTERN_FLAGS = regex.IGNORECASE | regex.FULLCASE

#: seconds any pattern gets on a subject, even when the subject's budget is spent
MIN_PATTERN_TIMEOUT = 0.001

_EMPTY: frozenset[str] = frozenset()
_METACHARACTERS = frozenset(".^$*+?{}[]()|\\")
_QUANTIFIERS = frozenset("*?{")
_SAFE_ESCAPED = frozenset("!\"#%&',-./:;<=>@_`~ ") | _METACHARACTERS


def literal_prefix(pattern: str) -> str:
    """A folded string the fold of every subject ``pattern`` matches starts with ('' when unsure).

    Conservative by design: it reads plain ASCII literals after an optional
    ``^`` and stops at the first construct it does not fully understand (or at
    an 'i', see below); a pattern with a top-level alternative or inline flags
    gets ''.
    """
    if "(?" in pattern or _has_top_level_alternative(pattern):
        return ""
    position = 1 if pattern.startswith("^") else 0
    literals: list[str] = []
    while position < len(pattern):
        char = pattern[position]
        width = 1
        if char == "\\":
            escaped = pattern[position + 1:position + 2]
            if escaped not in _SAFE_ESCAPED:
                break
            char, width = escaped, 2
        elif char in _METACHARACTERS or not char.isascii() or not char.isprintable():
            break
        if char in "iI":
            break  # IGNORECASE lets 'I' match the dotless 'ı', which folds to itself, not to 'i'
        following = pattern[position + width:position + width + 1]
        if following and following in _QUANTIFIERS:
            break  # this literal may be absent or repeated: it is not part of the prefix
        literals.append(char)
        if following == "+":
            break
        position += width
    return fold("".join(literals))


def _has_top_level_alternative(pattern: str) -> bool:
    depth, position, in_class = 0, 0, False
    while position < len(pattern):
        char = pattern[position]
        if char == "\\":
            position += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[position + 1:position + 2] == "]":
                position += 1  # a leading ']' is a literal inside the class
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        position += 1
    return False


class _Pattern:
    __slots__ = ("text", "compiled", "prefix", "keys")

    def __init__(self, text: str, compiled: t.Any) -> None:
        self.text = text
        self.compiled = compiled
        self.prefix = literal_prefix(text)
        self.keys: set[str] = set()


class _Subscriptions:
    __slots__ = ("subjects", "patterns")

    def __init__(self) -> None:
        self.subjects: set[str] = set()
        self.patterns: set[str] = set()

    def __len__(self) -> int:
        return len(self.subjects) + len(self.patterns)


class SubscriptionIndex:
    """Thread-safe map from subjects to the keys of their subscribers.

    :param max_subscriptions: most subjects plus patterns one key may hold
    :param pattern_timeout: seconds all patterns together may spend on one subject; a pattern
        that runs out of time is removed
    :param cache_size: subject results kept; 0 turns the cache off
    :param on_pattern_timeout: called as ``f(pattern, keys)`` after a pattern that
        ran out of time was removed (outside the index lock)
    """

    def __init__(
        self,
        *,
        max_subscriptions: int = 10000,
        pattern_timeout: float = 0.1,
        cache_size: int = 4096,
        on_pattern_timeout: c.Callable[[str, frozenset[str]], None] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._exact: dict[str, set[str]] = {}
        self._patterns: dict[str, _Pattern] = {}
        self._unprefixed: dict[str, _Pattern] = {}
        self._by_prefix: dict[str, dict[str, _Pattern]] = {}
        self._prefix_lengths: dict[int, int] = {}  # prefix length -> prefixes of that length
        self._sorted_prefix_lengths: list[int] = []
        self._by_key: dict[str, _Subscriptions] = {}
        self._cache: dict[str, frozenset[str]] = {}
        self._cache_size = cache_size
        self._max_subscriptions = max_subscriptions
        self._pattern_timeout = pattern_timeout
        self._on_pattern_timeout = on_pattern_timeout
        self.cache_hits = self.cache_misses = self.pattern_timeouts = 0
        #: called under the index lock as ``f(added, removed, pattern_change)`` when subscriptions change:
        #: folded subjects gained and lost (one entry per subscriber) and the change in the number of
        #: (subscriber, pattern) pairs. The backbone uses it to route by interest; None: nobody listens.
        self.listener: c.Callable[[c.Iterable[str], c.Iterable[str], int], None] | None = None

    # -- changes ---------------------------------------------------------

    def add_subjects(self, key: str, subjects: c.Iterable[str]) -> None:
        """Subscribe ``key`` to exact subjects; raises ValueError past the subscription cap."""
        folded = {fold(subject) for subject in subjects}
        if not folded:
            return
        with self._lock:
            own = self._by_key.get(key) or _Subscriptions()
            self._check_capacity(key, own, len(folded - own.subjects))
            self._by_key[key] = own
            added = folded - own.subjects
            for subject in added:
                own.subjects.add(subject)
                self._exact.setdefault(subject, set()).add(key)
            if added:
                self._cache.clear()  # keyed by subjects as published: any spelling may be cached
                if self.listener is not None:
                    self.listener(added, (), 0)

    def add_patterns(self, key: str, patterns: c.Iterable[str]) -> None:
        """Subscribe ``key`` to regex patterns; all or nothing.

        Raises ValueError naming the first pattern that does not compile, or
        when the subscription cap would be passed.
        """
        texts = list(dict.fromkeys(patterns))
        if not texts:
            return
        compiled = {}
        for text in texts:
            if text not in self._patterns:
                try:
                    compiled[text] = regex.compile(text, PATTERN_FLAGS)
                except (regex.error, ValueError, OverflowError, RecursionError) as error:
                    raise ValueError(f"invalid pattern {text!r}: {error}") from None
        with self._lock:
            own = self._by_key.get(key) or _Subscriptions()
            new_texts = [text for text in texts if text not in own.patterns]
            self._check_capacity(key, own, len(new_texts))
            self._by_key[key] = own
            for text in new_texts:
                entry = self._patterns.get(text)
                if entry is None:
                    entry = self._patterns[text] = _Pattern(text, compiled.get(text) or regex.compile(text, PATTERN_FLAGS))
                    self._file_pattern(entry)
                entry.keys.add(key)
                own.patterns.add(text)
            if new_texts:
                self._cache.clear()
                if self.listener is not None:
                    self.listener((), (), len(new_texts))

    def remove(self, key: str, texts: c.Iterable[str]) -> bool:
        """Drop the exact subjects and the patterns of these texts; True if ``key`` has nothing left."""
        with self._lock:
            own = self._by_key.get(key)
            if own is None:
                return True
            removed_subjects: list[str] = []
            removed_patterns = 0
            for text in texts:
                subject = fold(text)
                if subject in own.subjects:
                    own.subjects.discard(subject)
                    self._drop_exact(subject, key)
                    removed_subjects.append(subject)
                if text in own.patterns:
                    own.patterns.discard(text)
                    self._drop_pattern_key(text, key)
                    removed_patterns += 1
            if removed_patterns:
                self._cache.clear()
            if self.listener is not None and (removed_subjects or removed_patterns):
                self.listener((), removed_subjects, -removed_patterns)
            if not own:
                del self._by_key[key]
                return True
            return False

    def remove_subscriber(self, key: str) -> bool:
        """Drop everything ``key`` subscribed to; False if it held nothing."""
        with self._lock:
            own = self._by_key.pop(key, None)
            if own is None:
                return False
            for subject in own.subjects:
                self._drop_exact(subject, key)
            for text in own.patterns:
                self._drop_pattern_key(text, key)
            if own.patterns:
                self._cache.clear()
            if self.listener is not None:
                self.listener((), own.subjects, -len(own.patterns))
            return True

    # -- queries ---------------------------------------------------------

    def match(self, subject: str) -> frozenset[str]:
        """Keys subscribed to ``subject``, exactly or by a pattern; each key once."""
        timed_out: list[tuple[str, frozenset[str]]] = []
        with self._lock:
            result = self._cache.get(subject)
            if result is not None:
                self.cache_hits += 1
                return result
            self.cache_misses += 1
            folded = fold(subject)
            keys = set(self._exact.get(folded, _EMPTY))
            # one budget for the whole subject: a pattern gets what is left of it (at least a
            # millisecond, far more than a sane pattern needs), so many slow patterns cannot add up
            deadline = time.monotonic() + self._pattern_timeout
            for entry in self._candidates(folded):
                if entry.keys <= keys:
                    continue  # nothing to learn from this pattern
                budget = max(deadline - time.monotonic(), MIN_PATTERN_TIMEOUT)
                try:
                    if entry.compiled.match(subject, timeout=budget) is not None:
                        keys.update(entry.keys)
                except TimeoutError:
                    timed_out.append((entry.text, frozenset(entry.keys)))
            for text, owners in timed_out:
                self.pattern_timeouts += 1
                self._remove_pattern_everywhere(text, owners)
            result = frozenset(keys) if keys else _EMPTY
            if self._cache_size and not timed_out:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()
                self._cache[subject] = result
        if self._on_pattern_timeout is not None:
            for text, owners in timed_out:
                self._on_pattern_timeout(text, owners)
        return result

    def brute_force_match(self, subject: str) -> frozenset[str]:
        """``match`` without cache or prefilter: the reference the fast path is tested against."""
        with self._lock:
            keys = set(self._exact.get(fold(subject), _EMPTY))
            for entry in self._patterns.values():
                if entry.compiled.match(subject) is not None:
                    keys.update(entry.keys)
            return frozenset(keys)

    def subscriptions(self, key: str) -> tuple[frozenset[str], frozenset[str]]:
        """The (folded subjects, pattern texts) ``key`` holds."""
        with self._lock:
            own = self._by_key.get(key)
            if own is None:
                return _EMPTY, _EMPTY
            return frozenset(own.subjects), frozenset(own.patterns)

    def keys(self) -> frozenset[str]:
        """Every key holding at least one subscription."""
        with self._lock:
            return frozenset(self._by_key)

    def stats(self) -> dict[str, int]:
        """Counts for monitoring: subscribers, subjects, patterns, cache use, pattern timeouts."""
        with self._lock:
            return {
                "subscribers": len(self._by_key),
                "subjects": len(self._exact),
                "patterns": len(self._patterns),
                "cached_subjects": len(self._cache),
                "cache_hits": self.cache_hits,
                "cache_misses": self.cache_misses,
                "pattern_timeouts": self.pattern_timeouts,
            }

    # -- internals -------------------------------------------------------

    def _check_capacity(self, key: str, own: _Subscriptions, adding: int) -> None:
        if len(own) + adding > self._max_subscriptions:
            raise ValueError(
                f"subscriber {key} would hold {len(own) + adding} subscriptions; "
                f"the limit is {self._max_subscriptions} (setting max_subscriptions)"
            )

    def _candidates(self, folded: str) -> c.Iterator[_Pattern]:
        yield from self._unprefixed.values()
        for length in self._sorted_prefix_lengths:
            if length > len(folded):
                break
            bucket = self._by_prefix.get(folded[:length])
            if bucket:
                yield from bucket.values()

    def _file_pattern(self, entry: _Pattern) -> None:
        if not entry.prefix:
            self._unprefixed[entry.text] = entry
            return
        bucket = self._by_prefix.get(entry.prefix)
        if bucket is None:
            bucket = self._by_prefix[entry.prefix] = {}
            self._count_prefix_length(len(entry.prefix), +1)
        bucket[entry.text] = entry

    def _unfile_pattern(self, entry: _Pattern) -> None:
        if not entry.prefix:
            del self._unprefixed[entry.text]
            return
        bucket = self._by_prefix[entry.prefix]
        del bucket[entry.text]
        if not bucket:
            del self._by_prefix[entry.prefix]
            self._count_prefix_length(len(entry.prefix), -1)

    def _count_prefix_length(self, length: int, change: int) -> None:
        count = self._prefix_lengths.get(length, 0) + change
        if count:
            self._prefix_lengths[length] = count
        else:
            del self._prefix_lengths[length]
        self._sorted_prefix_lengths = sorted(self._prefix_lengths)

    def _remove_pattern_everywhere(self, text: str, keys: c.Iterable[str]) -> None:
        removed = 0
        for key in keys:
            own = self._by_key.get(key)
            if own is None or text not in own.patterns:
                continue
            own.patterns.discard(text)
            self._drop_pattern_key(text, key)
            removed += 1
            if not own:
                del self._by_key[key]
        self._cache.clear()
        if self.listener is not None and removed:
            self.listener((), (), -removed)

    def _drop_exact(self, subject: str, key: str) -> None:
        owners = self._exact.get(subject)
        if owners is not None:
            owners.discard(key)
            if not owners:
                del self._exact[subject]
        self._cache.clear()

    def _drop_pattern_key(self, text: str, key: str) -> None:
        entry = self._patterns.get(text)
        if entry is None:
            return
        entry.keys.discard(key)
        if not entry.keys:
            del self._patterns[text]
            self._unfile_pattern(entry)
