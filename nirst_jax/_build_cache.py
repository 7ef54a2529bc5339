"""A small least-recently-used cache of compiled programs, shared within one process."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class BuildCache(Generic[T]):
    """Keeps the `size` most recently used results of `build()` by key.

    Compiling a jitted program is most of the cost of a small job; callers that would compile
    the same program again (a second store, a resumed run) share one through this cache.

    Arguments:
        size: how many entries to keep (the least recently used goes first).
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a BuildCache needs size ≥ 1, got {size}")
        self.size = size
        self._entries: OrderedDict[Hashable, T] = OrderedDict()

    def get(self, key: Hashable | None, build: Callable[[], T]) -> T:
        """`build()`'s result for `key`, built once and kept; a key of None always builds
        (for callers whose inputs the key cannot name).

        Arguments:
            key: a hashable that determines what `build` returns, or None.
            build: makes the entry.
        Returns:
            the cached or new entry.
        """
        if key is None:
            return build()
        if key not in self._entries:
            self._entries[key] = build()
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        self._entries.move_to_end(key)
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)
