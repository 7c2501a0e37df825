"""Subjects and patterns as text: the one folding rule and argument validation.

Shared by the service (which must refuse bad input) and the client skeletons
(which check what they can before anything crosses the wire).
"""
from __future__ import annotations

import typing as t

__all__ = ["fold", "as_texts"]


def fold(subject: str) -> str:
    """The form subjects are compared and matched in: full Unicode case folding."""
    return subject.casefold()


def as_texts(value: t.Any, what: str, limit: int | None = None, setting: str = "") -> list[str]:
    """``value`` as a list of subjects: one str or a list/tuple of str.

    Raises TypeError or ValueError naming ``what`` and the problem: a wrong
    type, an empty list, an empty string, or a text longer than ``limit``
    (the message names ``setting``, the option that sets the limit).
    """
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"{what} must be a str or a list/tuple of str, not {type(value).__name__}")
    if not texts:
        raise ValueError(f"{what} must not be empty")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"each of {what} must be a str, not {type(text).__name__} ({text!r:.60})")
        if not text:
            raise ValueError(f"{what} must not contain an empty string")
        if limit is not None and len(text) > limit:
            named = f" (setting {setting})" if setting else ""
            raise ValueError(f"one of {what} is {len(text)} characters long; the limit is {limit}{named}: {text[:40]!r}...")
    return list(texts)
