"""Turning what a user typed into a safe FTS5 ``MATCH`` expression, and how hits are ranked.

User text is never passed to ``MATCH`` as is: FTS5 has its own query language (``"``, ``*``,
``:``, ``^``, ``NEAR``, ``AND``/``OR``/``NOT``, parentheses), and ``foo"bar OR`` is a syntax
error there. Instead the text is cut into words (runs of letters, digits, underscore) and every
word becomes a quoted string, so operators and punctuation lose their meaning: ``foo"bar OR``
searches for the words foo, bar and or, all of which must occur (implicit AND). Inside a
quoted string the tokenizer still splits ``foo_bar`` the way it split the indexed text.

Ranking is bm25 with column weights: a word in the title counts far more than one in the tags,
and tags more than the description.
"""

from __future__ import annotations

import re

MAX_QUERY_CHARS = 256
"""Longer input is cut: search is for titles, and long queries cost more to run."""

MAX_TERMS = 16

WEIGHTS = (10.0, 1.0, 4.0)
"""bm25 weights of (title, description, tags), the column order of ``videos_fts``."""

_WORD = re.compile(r"\w+")


def match_expression(text: str) -> str | None:
    """The FTS5 expression for ``text``, or None when it holds no word to search for."""
    words = _WORD.findall(text[:MAX_QUERY_CHARS])[:MAX_TERMS]
    if not words:
        return None
    # \w+ never contains a double quote; quoting makes keywords like OR/NEAR plain words.
    return " ".join(f'"{word}"' for word in words)


def bm25_call(table: str) -> str:
    """SQL for the weighted bm25 score of the current row of ``table``."""
    return f"bm25({table}, {', '.join(repr(w) for w in WEIGHTS)})"
