"""Search: FTS5 over title, description and tags, ranked by weighted bm25, safe for any text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from origin.catalog import SqliteCatalog
from origin.catalog.fts import MAX_TERMS, match_expression


@pytest.fixture
def library(catalog: SqliteCatalog) -> SqliteCatalog:
    catalog.create_video("A day at the beach", description="Waves and sand.", video_id="beach")
    catalog.create_video(
        "Mountain hike", description="We stop at a beach on the way down.", video_id="hike"
    )
    catalog.create_video("Cooking pasta", tags=["beach", "food"], video_id="pasta")
    catalog.create_video("Café société", description="Crème brûlée", video_id="cafe")
    for i in range(5):
        catalog.create_video(f"Filler {i}", description="nothing to see", video_id=f"f{i}")
    return catalog


def ids(catalog: SqliteCatalog, query: str) -> list[str]:
    return [hit.video.video_id for hit in catalog.search(query)]


def test_title_ranks_above_tags_above_description(library: SqliteCatalog) -> None:
    hits = library.search("beach")
    assert [h.video.video_id for h in hits] == ["beach", "pasta", "hike"]
    assert hits[0].score < hits[1].score < hits[2].score


def test_every_word_must_match(library: SqliteCatalog) -> None:
    assert ids(library, "beach waves") == ["beach"]
    assert ids(library, "beach pizza") == []


def test_case_and_accents_do_not_matter(library: SqliteCatalog) -> None:
    assert ids(library, "CAFE") == ["cafe"]
    assert ids(library, "creme brulee") == ["cafe"]


def test_index_follows_updates_and_deletes(library: SqliteCatalog) -> None:
    library.update_video("pasta", title="Pasta at the seaside", tags=["food"])
    assert ids(library, "seaside") == ["pasta"]
    assert "pasta" not in ids(library, "beach")
    library.increment_views("hike")  # not an indexed column: the index stays right
    library.delete_video("hike")
    assert ids(library, "beach") == ["beach"]
    library.delete_video("beach", hard=True)
    assert ids(library, "beach") == []
    assert ids(library, "waves") == []


def test_status_filter_and_limit(library: SqliteCatalog) -> None:
    library.set_status("hike", "FAILED", "x")
    assert [h.video.video_id for h in library.search("beach", status="FAILED")] == ["hike"]
    assert len(library.search("filler", limit=2)) == 2


HOSTILE = [
    'foo"bar OR',
    '"',
    '""',
    "OR",
    "AND NOT",
    "NEAR(beach, hike)",
    "beach*",
    "*",
    "title:beach",
    "-beach",
    "^beach",
    "(beach",
    "beach)",
    "'; DROP TABLE videos; --",
    "\x00",
    "",
    "   ",
    "🎬 beach",
    "a" * 10_000,
    " OR ".join(["beach"] * 100),
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_do_not_raise(library: SqliteCatalog, query: str) -> None:
    hits = library.search(query)
    assert all(h.video.deleted_at is None for h in hits)
    assert len(library.list_videos().videos) == 9


def test_operators_are_plain_words(library: SqliteCatalog) -> None:
    assert ids(library, "beach*") == ids(library, "beach")
    assert ids(library, "title:beach") == []  # "title" is a word here, not a column filter
    assert match_expression('foo"bar OR') == '"foo" "bar" "OR"'
    assert match_expression(" ".join(["w"] * 40)) == " ".join(['"w"'] * MAX_TERMS)
    assert match_expression("?!") is None


# Searching changes nothing, so one library may serve every generated query.
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(max_size=60) | st.lists(st.sampled_from([*HOSTILE, "beach"])).map(" ".join))
def test_any_text_is_a_valid_query(library: SqliteCatalog, query: str) -> None:
    library.search(query)


def test_tags_are_searched_as_text_not_as_json(catalog: SqliteCatalog) -> None:
    """Tags are stored as a JSON array with \\u escapes; the index holds their text."""
    catalog.create_video("Summer", tags=["été", "日本", "road-trip"], video_id="summer")
    catalog.create_video("Winter", tags=["snow"], video_id="winter")
    assert ids(catalog, "été") == ["summer"]
    assert ids(catalog, "ete") == ["summer"]  # accents do not matter, as in titles
    assert ids(catalog, "日本") == ["summer"]
    assert ids(catalog, "road trip") == ["summer"]
    for escape in ("u00e9", "u00e9t", "u65e5", "u00e9t u00e9"):
        assert ids(catalog, escape) == [], escape
    catalog.update_video("summer", tags=["automne"])
    assert ids(catalog, "été") == [] and ids(catalog, "automne") == ["summer"]
    catalog.delete_video("winter", hard=True)
    assert ids(catalog, "snow") == []
    with catalog._tx() as conn:  # what the triggers removed matched what they had indexed
        conn.execute("INSERT INTO videos_fts (videos_fts, rank) VALUES ('integrity-check', 1)")
        conn.execute("INSERT INTO videos_fts (videos_fts) VALUES ('rebuild')")
    assert ids(catalog, "automne") == ["summer"] and ids(catalog, "u00e9") == []
