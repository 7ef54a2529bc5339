"""BuildCache: one build per key, least recently used entries dropped first, None never cached."""

import pytest

from nirst_jax._build_cache import BuildCache


def counting_builder():
    calls = []

    def build(value):
        def make():
            calls.append(value)
            return [value]
        return make

    return calls, build


def test_a_key_is_built_once_and_the_same_object_returned():
    calls, build = counting_builder()
    cache = BuildCache(2)
    first = cache.get("a", build("a"))
    assert cache.get("a", build("a")) is first
    assert calls == ["a"]


def test_the_least_recently_used_key_is_dropped_first():
    calls, build = counting_builder()
    cache = BuildCache(2)
    cache.get("a", build("a"))
    cache.get("b", build("b"))
    cache.get("a", build("a"))  # "a" is now the most recent
    cache.get("c", build("c"))  # drops "b"
    assert len(cache) == 2
    cache.get("a", build("a"))
    cache.get("b", build("b"))
    assert calls == ["a", "b", "c", "b"]


def test_a_key_of_none_always_builds():
    calls, build = counting_builder()
    cache = BuildCache(2)
    assert cache.get(None, build(1)) is not cache.get(None, build(1))
    assert calls == [1, 1] and len(cache) == 0


def test_a_cache_without_room_is_refused():
    with pytest.raises(ValueError, match="size ≥ 1, got 0"):
        BuildCache(0)
