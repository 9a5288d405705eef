"""DistributedSampler sharding: every item on exactly one rank, for any world size and item count."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stable_audio_tools_ext.run.distributed import shard


@given(n_items=st.integers(min_value=0, max_value=300), world_size=st.integers(min_value=1, max_value=8))
def test_every_item_on_exactly_one_rank(n_items: int, world_size: int) -> None:
    items = [f"item-{i}" for i in range(n_items)]
    shares = [shard(items, world_size, rank) for rank in range(world_size)]
    flat = [item for share in shares for item in share]
    assert sorted(flat) == sorted(items)  # none lost, none duplicated (padding repeats dropped)
    assert len(set(flat)) == len(flat)
    sizes = [len(share) for share in shares]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # DistributedSampler's even split


def test_padding_repeats_are_dropped_even_when_padding_exceeds_the_list() -> None:
    # 1 item over 8 ranks: DistributedSampler hands the same item to all 8 ranks.
    assert [shard(["only"], 8, rank) for rank in range(8)] == [["only"]] + [[]] * 7
    # 10 items over 4 ranks: the sampler's strided split, minus the 2 padded repeats.
    assert [shard(list(range(10)), 4, rank) for rank in range(4)] == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
