"""Shard keys land in the Flink key groups chosen for them, so shards spread evenly.

The Python key groups are checked against Flink's own ``KeyGroupRangeAssignment`` (through
PyFlink's JVM gateway) for small and random keys and several max parallelisms: of an
``Integer``, and of the ``Row`` holding it that PyFlink's ``key_by`` keys a stream by.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from fraudstream.flink.key_groups import key_group, pyflink_key_group, shard_keys

FLINKS = """
import json, sys
from pyflink.java_gateway import get_gateway
jvm = get_gateway().jvm
assign = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment.assignToKeyGroup
keys, max_parallelisms = json.load(sys.stdin)
def row(k):  # what flink-python's KeyByKeySelector makes of the selected key
    fields = get_gateway().new_array(jvm.java.lang.Object, 1)
    fields[0] = jvm.java.lang.Integer(k)
    return jvm.org.apache.flink.types.Row.of(fields)
print(json.dumps([
    [[assign(jvm.java.lang.Integer(k), m), assign(row(k), m)] for k in keys]
    for m in max_parallelisms
]))
"""


def test_key_group_is_flinks() -> None:
    rng = random.Random(7)
    keys = [*range(300), *(rng.randrange(2**31) for _ in range(300)), 2**31 - 1]
    max_parallelisms = [1, 32, 128, 1000, 32_768]
    answer = subprocess.run(
        [sys.executable, "-c", FLINKS],
        input=json.dumps([keys, max_parallelisms]),
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    flinks = json.loads(answer.stdout)
    ours = [[[key_group(k, m), pyflink_key_group(k, m)] for k in keys] for m in max_parallelisms]
    assert ours == flinks


@given(
    shards_log=st.integers(0, 7),
    extra_log=st.integers(0, 3),
    parallelism_log=st.integers(0, 7),
)
def test_every_subtask_gets_the_same_number_of_shards(
    shards_log: int, extra_log: int, parallelism_log: int
) -> None:
    shards, max_parallelism = 2**shards_log, 2 ** (shards_log + extra_log)
    parallelism = 2 ** min(parallelism_log, shards_log)
    keys = shard_keys(shards, max_parallelism)
    assert len(set(keys)) == shards
    groups = [pyflink_key_group(k, max_parallelism) for k in keys]
    assert len(set(groups)) == shards  # one key group each
    subtasks = [g * parallelism // max_parallelism for g in groups]
    assert sorted(subtasks.count(i) for i in range(parallelism)) == [shards // parallelism] * (
        parallelism
    )


def test_the_old_keys_were_uneven() -> None:
    """Keyed by the shard number, 32 shards used 17 key groups and left subtasks idle; the
    keys chosen for the Integer's group (not the Row's) put 8 shards 6 and 2 at p2."""
    assert len({pyflink_key_group(s, 32) for s in range(32)}) < 32
    assert len({pyflink_key_group(k, 32) for k in shard_keys(32, 32)}) == 32
    integer_keys = [312, 361, 75, 300, 84, 70, 57, 163]  # Integer groups 0, 16, ..., 112
    assert [key_group(k, 128) for k in integer_keys] == list(range(0, 128, 16))
    at_p2 = [pyflink_key_group(k, 128) * 2 // 128 for k in integer_keys]
    assert sorted(at_p2.count(i) for i in (0, 1)) == [2, 6]
