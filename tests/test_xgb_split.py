"""mltk.xgb.split: row keys, exactly stratified selections, and the two-pass thresholds over
any batching equal to the selection made with every key in memory (in-process, fast)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mltk.xgb import split as sp


def table(n: int = 50_000, positive: float = 0.13, seed: int = 5):
    """Row positions with gaps (rows dropped for a missing target) and their classes."""
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(rng.random(int(n * 1.1)) < 1 / 1.1)[:n]
    return rows, (rng.random(len(rows)) < positive).astype(np.int64)


def batched(rows, y, cuts: int):
    pieces = np.array_split(np.arange(len(rows)), cuts)
    return lambda: ((rows[p], y[p]) for p in pieces)


def test_keys_are_a_bijection_of_the_row_and_differ_by_seed_and_stream():
    rows = np.arange(1_000_000)
    keys = sp.row_keys(rows, 0, sp.TEST_STREAM)
    assert keys.dtype == np.uint64 and len(np.unique(keys)) == len(rows)  # no ties
    assert (sp.row_keys(rows[::-1], 0, sp.TEST_STREAM) == keys[::-1]).all()  # position only
    # Large positions and seeds wrap around without error or ties.
    big = np.array([0, 1, 2**40, 2**63 - 1], dtype=np.int64)
    assert len(set(sp.row_keys(big, 2**62, 7).tolist())) == 4
    others = [sp.row_keys(rows[:1000], 1, sp.TEST_STREAM),
              sp.row_keys(rows[:1000], 0, sp.TUNE_STREAM),
              sp.row_keys(rows[:1000], 0, sp.EXPLAIN_STREAM)]
    for other in others:
        assert (other != keys[:1000]).mean() > 0.99
    # The top 12 bits spread evenly: every bin of the histogram is used.
    hist = sp.key_histogram(rows, np.zeros(len(rows), dtype=np.int64), 0, sp.TEST_STREAM)
    assert hist.shape == (2, sp.BINS) and hist[0].min() > 0 and hist[1].sum() == 0


@pytest.mark.parametrize("share", [0.2, 0.5, 0.013, 1.0, 0.0, 3 / 50_000])
def test_each_class_gets_its_exact_quota(share):
    rows, y = table()
    chosen = sp.select(rows, y, 3, sp.TEST_STREAM, share)
    assert (np.diff(chosen) > 0).all()  # positions, sorted
    for c in (0, 1):
        assert (y[chosen] == c).sum() == int(round((y == c).sum() * share))
    keys = sp.row_keys(rows, 3, sp.TEST_STREAM)
    for c in (0, 1):  # the quota's smallest keys of the class
        mine = np.sort(keys[chosen][y[chosen] == c])
        assert (mine == np.sort(keys[y == c])[:len(mine)]).all()


@pytest.mark.parametrize("share", [0.2, 0.0004, 0.9999, 1.0, 0.0])
def test_two_passes_over_any_batching_equal_the_selection_in_memory(share):
    rows, y = table()
    expected = sp.thresholds_in_memory(rows, y, 11, sp.TUNE_STREAM, share)
    for cuts in (1, 3, 17):
        thresholds, counts, taken = sp.thresholds_over(batched(rows, y, cuts), 11,
                                                       sp.TUNE_STREAM, share)
        assert thresholds == expected, cuts
        assert counts == {c: int((y == c).sum()) for c in (0, 1)}
        chosen = np.concatenate([sp.member(r, c, 11, sp.TUNE_STREAM, thresholds)
                                 for r, c in batched(rows, y, cuts)()])
        assert np.flatnonzero(chosen).tolist() == sp.select(rows, y, 11, sp.TUNE_STREAM,
                                                            share).tolist()
        assert taken == {c: int((y[chosen] == c).sum()) for c in (0, 1)}


def test_a_crowded_bin_still_gives_the_exact_threshold():
    """More rows than bins: the k-th key shares its bin with others; the second pass sorts
    them."""
    rows, y = table(400_000, positive=0.5, seed=1)
    hist = sp.key_histogram(rows, y, 0, sp.TEST_STREAM)
    assert hist.max() > 3
    expected = sp.thresholds_in_memory(rows, y, 0, sp.TEST_STREAM, 0.37)
    assert sp.thresholds_over(batched(rows, y, 5), 0, sp.TEST_STREAM, 0.37)[0] == expected


def test_no_batches_take_nothing():
    thresholds, counts, taken = sp.thresholds_over(lambda: iter(()), 0, sp.TEST_STREAM, 0.2)
    assert counts == taken == {0: 0, 1: 0} and thresholds == {0: sp.NONE, 1: sp.NONE}


def test_the_dask_partitions_mark_the_rows_the_one_process_split_takes():
    """The partition-wise steps of mltk.xgb.distributed, run here on pandas partitions cut
    three ways: the same test rows, and the same tuning sample, as the in-memory selection."""
    from mltk.xgb.distributed import ROW, TEST, Y, mark_part, select_part

    rows, y = table(30_000)
    frame = pd.DataFrame({ROW: rows, Y: y})
    expected = sp.select(rows, y, 0, sp.TEST_STREAM, 0.2)
    for cuts in (1, 3, 17):
        parts = [frame.iloc[p] for p in np.array_split(np.arange(len(frame)), cuts)]
        split = sp.thresholds_over(lambda parts=parts: ((p[ROW], p[Y]) for p in parts), 0,
                                   sp.TEST_STREAM, 0.2)[0]
        marked = pd.concat([mark_part(p, TEST, 0, sp.TEST_STREAM, split) for p in parts])
        assert np.flatnonzero(marked[TEST]).tolist() == expected.tolist()
        train = [p[~p[TEST]] for p in (mark_part(p, TEST, 0, sp.TEST_STREAM, split)
                                       for p in parts)]
        tune = sp.thresholds_over(lambda train=train: ((p[ROW], p[Y]) for p in train), 0,
                                  sp.TUNE_STREAM, 0.1)[0]
        sample = pd.concat([select_part(p, 0, sp.TUNE_STREAM, tune) for p in train])
        kept = marked[~marked[TEST]]
        assert sample[ROW].tolist() == kept[ROW].to_numpy()[sp.select(
            kept[ROW].to_numpy(), kept[Y].to_numpy(), 0, sp.TUNE_STREAM, 0.1)].tolist()
