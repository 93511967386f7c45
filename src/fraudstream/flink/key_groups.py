"""Keys that land in chosen Flink key groups, so shards spread evenly over the subtasks.

Flink assigns a key to key group ``murmur(key.hashCode()) % max_parallelism`` and a key
group ``g`` to subtask ``g * parallelism // max_parallelism`` (``KeyGroupRangeAssignment``).
Keyed by the shard number itself, 32 shards fell into only 17 of 32 key groups, so at
parallelism 16 six subtasks got no work. Here shard ``s`` of ``shards`` is keyed by the
smallest integer whose key group is ``s * max_parallelism // shards``: the shards sit evenly
over the key groups, so every parallelism that divides ``shards`` gives each subtask the same
number of shards, and a savepoint rescales as Flink rescales key groups.

PyFlink's ``key_by`` keys a stream by a ``Row`` holding the selected key (flink-python's
``KeyByKeySelector``), not by the key itself: an int ``k``'s Flink key is ``Row.of(k)``,
whose hash code is ``k + 62`` (``RowUtils.deepHashCodeRow``). :func:`pyflink_key_group`
is that key's group (tested against Flink's own, through the JVM).
"""

from __future__ import annotations

__all__ = ["key_group", "pyflink_key_group", "shard_keys"]

_MASK = 0xFFFFFFFF
ROW_HASH_OFFSET = 62  # Row.of(k).hashCode() - k: 31 x (31 x RowKind.INSERT's byte 0 + 1) + 31


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def key_group(key: int, max_parallelism: int) -> int:
    """Flink's key group of an int key, a Java ``Integer`` (``MathUtils.murmurHash`` of its
    hash code, modulo ``max_parallelism``; tested equal to Flink's own).

    >>> [key_group(k, 128) for k in range(4)]
    [94, 86, 127, 113]
    """
    code = key & _MASK  # Integer.hashCode() is the value itself
    code = (code * 0xCC9E2D51) & _MASK
    code = _rotl(code, 15)
    code = (code * 0x1B873593) & _MASK
    code = _rotl(code, 13)
    code = (code * 5 + 0xE6546B64) & _MASK
    code ^= 4
    code ^= code >> 16  # bitMix
    code = (code * 0x85EBCA6B) & _MASK
    code ^= code >> 13
    code = (code * 0xC2B2AE35) & _MASK
    code ^= code >> 16
    signed = code - (1 << 32) if code & 0x80000000 else code
    hashed = signed if signed >= 0 else (-signed if signed != -(1 << 31) else 0)
    return hashed % max_parallelism


def pyflink_key_group(key: int, max_parallelism: int) -> int:
    """The key group of a stream keyed by ``key_by`` on the int ``key`` (a ``Row`` of it).

    >>> [pyflink_key_group(k, 128) for k in range(4)]
    [33, 44, 97, 104]
    """
    return key_group(key + ROW_HASH_OFFSET, max_parallelism)


def shard_keys(shards: int, max_parallelism: int) -> tuple[int, ...]:
    """The key of each shard: the smallest non-negative int whose ``key_by`` key group is
    ``shard * max_parallelism // shards``.

    >>> keys = shard_keys(4, 128)
    >>> [pyflink_key_group(k, 128) for k in keys]
    [0, 32, 64, 96]
    """
    if not 1 <= shards <= max_parallelism:
        raise ValueError(f"shards must be in 1..{max_parallelism} (the max parallelism)")
    wanted = {shard * max_parallelism // shards: shard for shard in range(shards)}
    keys = [0] * shards
    candidate = 0
    while wanted:
        shard = wanted.pop(pyflink_key_group(candidate, max_parallelism), None)
        if shard is not None:
            keys[shard] = candidate
        candidate += 1
    return tuple(keys)
