"""Offline unit and property tests for the subscription index (no sockets, no Pyro5)."""
from __future__ import annotations

import pytest
import regex
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from conftest import bounded
from eventservice.core.subscriptions import PATTERN_FLAGS, SubscriptionIndex, fold, literal_prefix

CACHE_ON_OFF = [4096, 0]
CACHE_IDS = ["cache", "nocache"]


@pytest.fixture(params=CACHE_ON_OFF, ids=CACHE_IDS)
def index(request):
    """A fresh index, once with the match cache and once without (like NATS' NoCache pairs)."""
    return SubscriptionIndex(cache_size=request.param)


def internal_tables(index: SubscriptionIndex) -> dict:
    return {
        "_exact": index._exact,
        "_patterns": index._patterns,
        "_by_key": index._by_key,
        "_by_prefix": index._by_prefix,
        "_unprefixed": index._unprefixed,
        "_prefix_lengths": index._prefix_lengths,
        "_sorted_prefix_lengths": index._sorted_prefix_lengths,
    }


def assert_empty(index: SubscriptionIndex) -> None:
    stats = index.stats()
    assert (stats["subscribers"], stats["subjects"], stats["patterns"]) == (0, 0, 0), stats
    assert index.keys() == frozenset()
    leftovers = {name: table for name, table in internal_tables(index).items() if table}
    assert leftovers == {}


# -- folding and exact subjects ----------------------------------------------


def test_fold_is_full_unicode_case_folding():
    """fold() applies full case folding, so ß/ẞ become 'ss' and both spellings agree."""
    assert fold("straße.NEWS") == fold("STRASSE.news") == "strasse.news"
    assert fold("ẞ") == "ss"
    assert fold("ΣΊΣΥΦΟΣ") == fold("σίσυφος")


def test_exact_subject_matches_under_full_case_folding(index):
    """An exact subscription to 'straße.NEWS' receives 'STRASSE.news' and other case variants."""
    index.add_subjects("k", ["straße.NEWS"])
    for variant in ("STRASSE.news", "strasse.news", "Straße.News", "STRAẞE.NEWS"):
        assert index.match(variant) == {"k"}, variant
    assert index.match("strase.news") == frozenset()
    assert index.match("straße.NEWS.extra") == frozenset()
    assert index.subscriptions("k") == ({"strasse.news"}, frozenset())


def test_case_variants_of_one_subject_are_one_subscription(index):
    """Subscribing to several case variants of one subject stores it once."""
    index.add_subjects("k", ["STRASSE.news", "straße.NEWS", "Strasse.News"])
    assert index.subscriptions("k") == ({"strasse.news"}, frozenset())
    assert index.stats()["subjects"] == 1
    assert index.remove("k", ["STRAßE.news"]) is True
    assert index.match("strasse.news") == frozenset()


@pytest.mark.parametrize("pattern", [r"^STOCKQUOTE\.S.*$", r"STOCKQUOTE\.S.*", r"stockquote\.s"])
def test_pattern_is_anchored_at_subject_start(index, pattern):
    """Patterns match case-insensitively from the subject's start only (regex .match)."""
    index.add_patterns("k", [pattern])
    assert index.match("STOCKQUOTE.SUN") == {"k"}
    assert index.match("stockquote.sap") == {"k"}
    assert index.match("StockQuote.S") == {"k"}
    assert index.match("STOCKQUOTE.IBM") == frozenset()
    assert index.match("NYSE.STOCKQUOTE.SUN") == frozenset()


def test_pattern_end_anchor_is_respected(index):
    """A '$'-terminated pattern does not match a subject with trailing text."""
    index.add_patterns("k", [r"^STOCKQUOTE\.SUN$"])
    assert index.match("stockquote.sun") == {"k"}
    assert index.match("stockquote.sunw") == frozenset()


def test_pattern_uses_full_case_matching(index):
    """Patterns are IGNORECASE|FULLCASE: 'STRASSE' matches 'straße' and 'straße' matches 'STRASSE'."""
    index.add_patterns("upper", [r"STRASSE\..*"])
    index.add_patterns("eszett", [r"straße\.news"])
    assert index.match("straße.news") == {"upper", "eszett"}
    assert index.match("STRASSE.NEWS") == {"upper", "eszett"}
    assert index.match("strasse.weather") == {"upper"}


def test_key_with_exact_and_overlapping_patterns_is_matched_once(index):
    """A key subscribed exactly and by several overlapping patterns appears once in match()."""
    index.add_subjects("k", ["STOCKQUOTE.SUN"])
    index.add_patterns("k", [r"STOCKQUOTE\..*", r"^STOCKQUOTE\.S.*$", r".*", r"stock"])
    index.add_patterns("other", [r"STOCKQUOTE\.SUN"])
    result = index.match("stockquote.sun")
    assert isinstance(result, frozenset)
    assert sorted(result) == ["k", "other"]
    assert index.match("STOCKQUOTE.IBM") == {"k"}


def test_match_on_empty_index_is_empty(index):
    """Nothing subscribed means no keys for any subject."""
    assert index.match("anything") == frozenset()
    assert index.brute_force_match("anything") == frozenset()


# -- removal ---------------------------------------------------------------


def test_remove_drops_exact_subject_and_pattern_of_that_text(index):
    """remove() drops both the exact subject and the pattern spelled by the text."""
    index.add_subjects("k", ["A.B"])
    index.add_patterns("k", ["A.B", r"X\..*"])
    assert index.match("a.b") == {"k"}
    assert index.match("axb") == {"k"}  # via the pattern 'A.B'
    assert index.remove("k", ["A.B"]) is False  # X\..* is left
    assert index.subscriptions("k") == (frozenset(), {r"X\..*"})
    assert index.match("a.b") == frozenset()
    assert index.match("axb") == frozenset()
    assert index.match("x.y") == {"k"}
    assert index.remove("k", [r"X\..*"]) is True
    assert index.keys() == frozenset()
    assert index.match("x.y") == frozenset()


def test_remove_exact_subject_by_case_variant(index):
    """remove() folds the text for exact subjects, so a case variant removes it."""
    index.add_subjects("k", ["straße.NEWS", "other"])
    assert index.remove("k", ["STRASSE.news"]) is False
    assert index.subscriptions("k") == ({"other"}, frozenset())


def test_remove_pattern_needs_exact_pattern_text(index):
    """Patterns are removed by their exact text, not by a case variant."""
    index.add_patterns("k", [r"STOCK\..*"])
    assert index.remove("k", [r"stock\..*"]) is False
    assert index.match("stock.sun") == {"k"}
    assert index.remove("k", [r"STOCK\..*"]) is True
    assert index.match("stock.sun") == frozenset()


def test_remove_returns_false_while_something_is_left(index):
    """remove() returns True only when the key has no subscription left."""
    index.add_subjects("k", ["a", "b"])
    assert index.remove("k", ["a"]) is False
    assert index.remove("k", ["not-subscribed"]) is False
    assert index.match("b") == {"k"}
    assert index.remove("k", ["b"]) is True
    assert index.keys() == frozenset()


def test_remove_leaves_other_keys_alone(index):
    """Removing one key's subscription keeps other keys' identical subscriptions."""
    index.add_subjects("a", ["s"])
    index.add_subjects("b", ["s"])
    index.add_patterns("a", ["p.*"])
    index.add_patterns("b", ["p.*"])
    assert index.remove("a", ["s", "p.*"]) is True
    assert index.match("s") == {"b"}
    assert index.match("pq") == {"b"}
    assert index.stats()["patterns"] == 1


def test_remove_subscriber_drops_everything(index):
    """remove_subscriber() drops all of a key's subjects and patterns; False when it held nothing."""
    index.add_subjects("k", ["a", "b"])
    index.add_patterns("k", ["c.*", "^d$"])
    index.add_subjects("other", ["a"])
    assert index.remove_subscriber("k") is True
    assert index.subscriptions("k") == (frozenset(), frozenset())
    assert index.match("a") == {"other"}
    assert index.match("b") == frozenset()
    assert index.match("cx") == frozenset()
    assert index.match("d") == frozenset()
    assert index.remove_subscriber("k") is False
    assert index.keys() == {"other"}


def test_add_with_empty_list_registers_nothing(index):
    """Adding an empty list of subjects or patterns leaves no (empty) subscriber behind."""
    index.add_subjects("k", [])
    index.add_patterns("k", [])
    assert index.keys() == frozenset()
    assert index.stats()["subscribers"] == 0
    assert index.remove_subscriber("k") is False


# -- errors ----------------------------------------------------------------


def test_invalid_pattern_raises_value_error_naming_it(index):
    """A pattern that does not compile raises ValueError naming it; nothing is registered."""
    with pytest.raises(ValueError, match=r"\(unclosed"):
        index.add_patterns("k", ["(unclosed"])
    assert index.keys() == frozenset()
    assert_empty(index)


def test_invalid_pattern_in_list_registers_none_of_the_list(index):
    """A list with one bad pattern registers none of its patterns (all or nothing)."""
    index.add_subjects("k", ["keep"])
    index.add_patterns("k", ["kept.*"])
    with pytest.raises(ValueError, match=r"\[bad"):
        index.add_patterns("k", [r"good\..*", "[bad", "also.*"])
    assert index.subscriptions("k") == ({"keep"}, {"kept.*"})
    assert index.stats()["patterns"] == 1
    assert index.match("good.x") == frozenset()
    assert index.match("also") == frozenset()
    assert index.match("kept") == {"k"}


def test_subscription_cap_raises_naming_the_limit(index):
    """Passing max_subscriptions raises ValueError naming the limit; nothing of that call is registered."""
    capped = SubscriptionIndex(max_subscriptions=3, cache_size=index._cache_size)
    capped.add_subjects("k", ["a", "b"])
    with pytest.raises(ValueError, match=r"max_subscriptions") as error:
        capped.add_patterns("k", ["c.*", "d.*"])
    assert "3" in str(error.value)
    with pytest.raises(ValueError, match=r"limit is 3"):
        capped.add_subjects("k", ["x", "y"])
    assert capped.subscriptions("k") == ({"a", "b"}, frozenset())
    assert capped.match("cx") == frozenset()
    assert capped.match("x") == frozenset()
    assert capped.stats()["patterns"] == 0


def test_subscription_cap_counts_only_new_subscriptions(index):
    """Re-subscribing held subjects/patterns (or case variants) does not count against the cap."""
    capped = SubscriptionIndex(max_subscriptions=3, cache_size=index._cache_size)
    capped.add_subjects("k", ["A", "ẞ"])
    capped.add_subjects("k", ["a", "ss", "SS", "c"])  # only 'c' is new: 3 in all
    capped.add_patterns("other", ["p1", "p2", "p3"])
    capped.add_patterns("other", ["p1", "p3"])
    assert capped.subscriptions("k") == ({"a", "ss", "c"}, frozenset())
    with pytest.raises(ValueError, match=r"would hold 4 subscriptions; the limit is 3 \(setting max_subscriptions\)"):
        capped.add_patterns("k", ["z"])
    with pytest.raises(ValueError, match=r"would hold 2 subscriptions; the limit is 1"):
        SubscriptionIndex(max_subscriptions=1).add_subjects("k", ["one", "two"])


# -- table hygiene ---------------------------------------------------------


def populate(index: SubscriptionIndex, keys: int = 6) -> None:
    for number in range(keys):
        key = f"key{number}"
        index.add_subjects(key, [f"STOCKQUOTE.{number}", "shared.subject", f"straße.{number}"])
        index.add_patterns(key, [r"^STOCKQUOTE\.S.*$", rf"STOCKQUOTE\.{number}.*", "(a|b)c", r"stock", ".*x",
                                 rf"prefix{number}[0-9]", "shared.*"])


def test_tables_shrink_to_empty_after_removal(index):
    """After everything is removed, stats() counts and every internal table are empty."""
    populate(index)
    assert index.stats()["patterns"] > 0 and index._by_prefix and index._unprefixed
    for subject in ("stockquote.sun", "shared.subject", "strasse.3", "ac", "prefix15"):
        index.match(subject)
    for number in range(0, 6, 2):
        index.remove_subscriber(f"key{number}")
    for number in range(1, 6, 2):
        key = f"key{number}"
        subjects, patterns = index.subscriptions(key)
        assert index.remove(key, sorted(subjects) + sorted(patterns)) is True
    assert_empty(index)
    assert index.match("stockquote.sun") == frozenset()


def test_tables_do_not_grow_over_repeated_cycles(index):
    """Repeated subscribe/unsubscribe cycles leave no residue (like blinker's test_empty_bucket_growth)."""
    for cycle in range(20):
        populate(index, keys=3)
        index.match(f"stockquote.s{cycle}")
        for number in range(3):
            index.remove_subscriber(f"key{number}")
        assert_empty(index)


def test_patterns_match_the_subject_as_published():
    """A pattern sees the subject as published (full case folding inside regex), not its casefold."""
    index = SubscriptionIndex()
    index.add_patterns("k", [r"^stra.e\."])
    assert index.match("straße.x") == {"k"}
    assert index.match("STRAẞE.x") == {"k"}
    assert index.match("STRASSE.x") == frozenset()  # one '.' cannot match 'SS'


# -- cache -----------------------------------------------------------------


def test_cache_counts_hits_and_misses():
    """A repeated match() is served from the cache and counted as a hit."""
    index = SubscriptionIndex(cache_size=16)
    index.add_patterns("k", ["a.*"])
    assert index.match("abc") == {"k"}
    assert (index.cache_hits, index.cache_misses) == (0, 1)
    assert index.match("abc") == {"k"}
    assert index.match("ABC") == {"k"}  # cached by the subject as published: another entry
    stats = index.stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["cached_subjects"]) == (1, 2, 2)


def test_cache_size_zero_disables_cache():
    """cache_size=0 caches nothing: no hits, every match is a miss."""
    index = SubscriptionIndex(cache_size=0)
    index.add_subjects("k", ["a"])
    for _ in range(3):
        assert index.match("a") == {"k"}
    stats = index.stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["cached_subjects"]) == (0, 3, 0)
    assert index._cache == {}


def test_cache_is_bounded():
    """With cache_size=4, no more than 4 subject results are ever cached."""
    index = SubscriptionIndex(cache_size=4)
    index.add_patterns("k", ["s.*"])
    for number in range(50):
        assert index.match(f"s{number}") == {"k"}
        assert index.stats()["cached_subjects"] <= 4
        assert len(index._cache) <= 4
    assert index.match("s49") == {"k"}
    assert index.cache_hits >= 1


def test_cache_invalidated_by_new_pattern(index):
    """A subject cached as unmatched is matched by a pattern subscribed afterwards."""
    assert index.match("STOCK.SUN") == frozenset()
    index.add_patterns("k", [r"stock\..*"])
    assert index.match("STOCK.SUN") == {"k"}
    index.add_patterns("k2", [r"stock\..*"])  # same pattern text, another key
    assert index.match("STOCK.SUN") == {"k", "k2"}


def test_cache_invalidated_by_new_exact_subject(index):
    """A subject cached before an exact subscription returns the new key after it."""
    index.add_subjects("other", ["x"])
    assert index.match("straße") == frozenset()
    assert index.match("x") == {"other"}
    index.add_subjects("k", ["STRASSE"])
    assert index.match("straße") == {"k"}
    assert index.match("x") == {"other"}


def test_cache_invalidated_by_removals(index):
    """remove() and remove_subscriber() of exact subjects and patterns are seen by the next match."""
    index.add_subjects("a", ["s"])
    index.add_patterns("b", ["s.*"])
    index.add_subjects("c", ["s"])
    index.add_patterns("d", ["s"])
    assert index.match("s") == {"a", "b", "c", "d"}
    index.remove("a", ["S"])
    assert index.match("s") == {"b", "c", "d"}
    index.remove("b", ["s.*"])
    assert index.match("s") == {"c", "d"}
    index.remove_subscriber("c")
    assert index.match("s") == {"d"}
    index.remove_subscriber("d")
    assert index.match("s") == frozenset()


# -- pattern timeout -------------------------------------------------------


def test_pattern_timeout_removes_the_pattern_and_keeps_matching():
    """A catastrophic pattern times out, is removed and reported; other keys still match."""
    reported = []
    index = SubscriptionIndex(pattern_timeout=0.05, on_pattern_timeout=lambda text, keys: reported.append((text, keys)))
    subject = "a" * 60 + "!"
    index.add_patterns("bad", ["(a|aa)+$"])
    index.add_subjects("good", [subject])
    result = bounded(index.match, subject)  # unbounded, matching it would take ages (2**60 ways to split the a's)
    assert "good" in result and "bad" not in result
    assert index.subscriptions("bad") == (frozenset(), frozenset())
    assert index.stats()["patterns"] == 0
    assert index.pattern_timeouts == 1 and index.stats()["pattern_timeouts"] == 1
    assert reported == [("(a|aa)+$", frozenset({"bad"}))]
    assert index.match(subject) == {"good"}
    assert index.pattern_timeouts == 1


def test_pattern_timeout_removes_only_the_pattern():
    """A timed-out pattern is removed, but an exact subscription spelled the same stays."""
    index = SubscriptionIndex(pattern_timeout=0.05, cache_size=0)
    index.add_patterns("bad", ["(a|aa)+$"])
    index.add_subjects("bad", ["(a|aa)+$", "other"])
    index.match("a" * 60 + "!")
    assert index.pattern_timeouts == 1
    assert index.subscriptions("bad") == ({"(a|aa)+$", "other"}, frozenset())
    assert index.match("(A|AA)+$") == {"bad"}


# -- literal_prefix --------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (r"^STOCKQUOTE\.S.*$", "stockquote.s"),
        (r"STOCKQUOTE\.S.*", "stockquote.s"),
        ("abc", "abc"),
        ("ABC", "abc"),
        ("ab*c", "a"),
        ("ab+c", "ab"),
        ("ab?", "a"),
        ("ab{0,2}", "a"),
        ("a{2}", ""),
        ("abc|d", ""),
        ("x(a|b)", "x"),
        ("(a|b)c", ""),
        ("(?i)x", ""),
        ("ab(?=c)", ""),
        (r"a\dc", "a"),
        (r"a\.b", "a.b"),
        (r"a\\b", "a\\b"),
        ("x[ab]", "x"),
        ("[ab]x", ""),
        ("x[|]y", "x"),
        ("a.c", "a"),
        ("a$", "a"),
        ("straße", "stra"),
        ("éa", ""),
        ("", ""),
        ("^", ""),
        (".*", ""),
    ],
)
def test_literal_prefix_table(pattern, prefix):
    """literal_prefix() returns the folded literal start of a pattern, '' when unsure."""
    assert literal_prefix(pattern) == prefix


LITERALS = ["a", "b", "c", "s", "k", "i", "x", "A", "B", "S", "K", "I", "X", "ß", "ẞ", "\u212a", "İ", "ı", "é", "-", " "]
CLASSES = {"[a-c]": "abcABC", "[A-C]": "abcABC", "[sk]": "skSK\u212aſ", "[^a]": "bsßıİK", "[ßi]": "ßiIİı"}
QUANTIFIERS = {"*": (0, 2), "+": (1, 2), "?": (0, 1), "{0,2}": (0, 2), "{2}": (2, 2), "+?": (1, 2), "*?": (0, 2)}
ANY_CHARS = "abcsikABCSIKßẞİı\u212aſ.-x "
VARIANTS = {"s": "sSſ", "k": "kK\u212a", "i": "iIİı", "a": "aA", "x": "xX", "ß": ["ß", "ẞ", "ss", "SS"], "I": "Iiıİ"}


@st.composite
def atom(draw, depth=0):
    """(pattern text, strategy of a string this text matches)."""
    kinds = ["literal"] * 8 + ["dot", "escaped_dot", "class"] + (["group"] if depth < 2 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "literal":
        char = draw(st.sampled_from(LITERALS))
        text, sample = char, st.just(char)
    elif kind == "dot":
        text, sample = ".", st.sampled_from(ANY_CHARS)
    elif kind == "escaped_dot":
        text, sample = r"\.", st.just(".")
    elif kind == "class":
        text = draw(st.sampled_from(sorted(CLASSES)))
        sample = st.sampled_from(CLASSES[text])
    else:
        branches = draw(st.lists(sequence(depth + 1), min_size=1, max_size=3))
        capture = draw(st.sampled_from(["(", "(?:"]))
        text = capture + "|".join(branch for branch, _ in branches) + ")"
        sample = st.one_of([branch_sample for _, branch_sample in branches])
    if draw(st.integers(0, 3)) == 0:
        quantifier = draw(st.sampled_from(sorted(QUANTIFIERS)))
        low, high = QUANTIFIERS[quantifier]
        text += quantifier
        sample = st.lists(sample, min_size=low, max_size=high).map("".join)
    return text, sample


@st.composite
def sequence(draw, depth=0):
    anchor = st.sampled_from([("^", st.just("")), ("$", st.just(""))])
    parts = draw(st.lists(st.integers(0, 9).flatmap(lambda roll: anchor if roll == 0 else atom(depth)),
                          min_size=1, max_size=5))
    text = "".join(part for part, _ in parts)
    sample = st.tuples(*(part_sample for _, part_sample in parts)).map("".join)
    return text, sample


@st.composite
def pattern_and_sample(draw):
    branches = draw(st.lists(sequence(), min_size=1, max_size=1 + (draw(st.integers(0, 3)) == 0)))
    start = draw(st.sampled_from(["", "^"]))
    end = draw(st.sampled_from(["", "$"]))
    text = start + "|".join(branch for branch, _ in branches) + end
    return text, st.one_of([sample for _, sample in branches])


@st.composite
def mutated(draw, base):
    """A case/Unicode variant of ``base``, sometimes with a character dropped or text appended."""
    chars = []
    for char in base:
        options = VARIANTS.get(char) or VARIANTS.get(char.lower()) or [char, char.upper(), char.lower()]
        chars.append(draw(st.sampled_from(list(options))))
    text = "".join(chars)
    if text and draw(st.booleans()):
        cut = draw(st.integers(0, len(text) - 1))
        text = text[:cut] + text[cut + 1:]
    if draw(st.booleans()):
        text += draw(st.text(alphabet=ANY_CHARS, max_size=3))
    return text


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_literal_prefix_is_a_prefix_of_every_matched_subject(data):
    """The fold of every subject a pattern .match()es starts with literal_prefix(pattern)."""
    pattern, sample = data.draw(pattern_and_sample(), label="pattern")
    try:
        compiled = regex.compile(pattern, PATTERN_FLAGS)
    except regex.error:
        assume(False)
    prefix = literal_prefix(pattern)
    assert prefix == fold(prefix)
    for _ in range(8):
        subject = data.draw(mutated(data.draw(sample, label="sample")), label="subject")
        folded = fold(subject)
        try:
            # nested quantifiers can backtrack for ages (beyond any test timeout: the C matcher holds the thread)
            matched = compiled.match(subject, timeout=1.0)
        except TimeoutError:
            assume(False)
        if matched is not None:
            assert folded.startswith(prefix), (pattern, prefix, subject, folded)


@pytest.mark.parametrize(("pattern", "subject"), [("I", "ı"), ("^BIG", "bıg"), ("ID.*", "ıd.x")])
def test_literal_prefix_covers_dotless_i(pattern, subject):
    """regex matches uppercase 'I' against dotless 'ı' (which casefold keeps), so the prefix must allow it."""
    folded = fold(subject)
    assert regex.compile(pattern, PATTERN_FLAGS).match(subject) is not None
    assert folded.startswith(literal_prefix(pattern))
    index = SubscriptionIndex(cache_size=0)
    index.add_patterns("k", [pattern])
    assert index.match(subject) == index.brute_force_match(subject) == {"k"}


# -- the key property: fast path == brute force == naive model ---------------

KEYS = ["k1", "k2", "k3", "k4"]
SUBJECTS = [
    "STOCKQUOTE.SUN", "stockquote.sun", "StockQuote.SAP", "STOCKQUOTE.IBM", "NYSE.STOCKQUOTE.SUN", "STOCKQUOTE.",
    "stock", "STOCKS", "straße.news", "STRASSE.NEWS", "strasse.weather", "ẞ", "ss", "ID", "id", "ıd", "İD",
    "BIG", "bıg", "kelvin", "\u212aELVIN", "a", "aa", "ab", "abbc", "ac", "x.sun", "",
]
PATTERNS = [
    r"^STOCKQUOTE\.S.*$", r"STOCKQUOTE\.S", r"stockquote\..*", r"STOCK", r"stock.*\.sun$", r".*SUN", r"NYSE\..*",
    r"STRASSE\..*", r"straße\..*", r"(STOCK|NYSE)\..*", r"STOCKQUOTE\.(SUN|IBM)", r"a|stock", r"ab*", r"ab+c?",
    r"a{2}", r"ID", r"I", r"BIG", r"B[I]G", r"KELVIN", r"\u212aelvin", r".*", r"(?i)stockquote", r"ss$", r"ẞ",
    r"\w+\.news", r"[a-c]+", r"stock(?=s)", "STOCKQUOTE.SUN",
]
INVALID_PATTERNS = ["(unclosed", "[bad", "*start"]


class IndexMachine(RuleBasedStateMachine):
    """Random subscribe/unsubscribe/match sequences; match() must equal brute force and a naive model."""

    cache_size = 4096

    def __init__(self) -> None:
        super().__init__()
        self.index = SubscriptionIndex(cache_size=self.cache_size)
        self.model: dict[str, tuple[set[str], set[str]]] = {}

    def model_match(self, subject: str) -> frozenset[str]:
        folded = fold(subject)
        return frozenset(
            key for key, (subjects, patterns) in self.model.items()
            if folded in subjects or any(regex.match(pattern, subject, PATTERN_FLAGS) for pattern in patterns)
        )

    def check(self, subject: str) -> None:
        expected = self.model_match(subject)
        assert self.index.brute_force_match(subject) == expected, subject
        assert self.index.match(subject) == expected, subject

    @rule(key=st.sampled_from(KEYS), subjects=st.lists(st.sampled_from(SUBJECTS), min_size=1, max_size=4))
    def add_subjects(self, key, subjects):
        self.index.add_subjects(key, subjects)
        self.model.setdefault(key, (set(), set()))[0].update(fold(subject) for subject in subjects)

    @rule(key=st.sampled_from(KEYS), patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=4))
    def add_patterns(self, key, patterns):
        self.index.add_patterns(key, patterns)
        self.model.setdefault(key, (set(), set()))[1].update(patterns)

    @rule(key=st.sampled_from(KEYS), patterns=st.lists(st.sampled_from(PATTERNS), max_size=3),
          bad=st.sampled_from(INVALID_PATTERNS))
    def add_patterns_with_invalid_one(self, key, patterns, bad):
        with pytest.raises(ValueError, match=f"invalid pattern {regex.escape(repr(bad))}"):
            self.index.add_patterns(key, [*patterns, bad])

    @rule(key=st.sampled_from(KEYS), texts=st.lists(st.sampled_from(SUBJECTS + PATTERNS), min_size=1, max_size=4))
    def remove(self, key, texts):
        emptied = self.index.remove(key, texts)
        if key in self.model:
            subjects, patterns = self.model[key]
            subjects.difference_update(fold(text) for text in texts)
            patterns.difference_update(texts)
            if not subjects and not patterns:
                del self.model[key]
        assert emptied is (key not in self.model)

    @rule(key=st.sampled_from(KEYS))
    def remove_subscriber(self, key):
        assert self.index.remove_subscriber(key) is (self.model.pop(key, None) is not None)

    @rule(subject=st.sampled_from(SUBJECTS))
    def match(self, subject):
        self.check(subject)

    @invariant()
    def every_subject_matches_like_brute_force(self):
        for subject in SUBJECTS:
            self.check(subject)

    @invariant()
    def subscriptions_agree_with_model(self):
        assert self.index.keys() == set(self.model)
        for key, (subjects, patterns) in self.model.items():
            assert self.index.subscriptions(key) == (subjects, patterns)
        if not self.model:
            assert_empty(self.index)


@pytest.mark.parametrize("cache_size", [0, 3, 4096])
def test_match_equals_brute_force_and_model_over_random_operations(cache_size):
    """Across random operation sequences, match() == brute_force_match() == a naive model, at every step."""
    machine = type(f"IndexMachine{cache_size}", (IndexMachine,), {"cache_size": cache_size})
    run_state_machine_as_test(
        machine,
        settings=settings(max_examples=60, stateful_step_count=25, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
