"""The held-out validation split: disjoint from training, complete, fixed across training seeds,
readable through the batch pipeline, and rejected when it cannot exist."""

import numpy as np
import pytest

from jaxvision.data import holdout, pipeline


def test_holdout_partitions_the_indices_reproducibly():
    train, validation = holdout.holdout_indices(1000, 0.1)
    assert len(validation) == 100 and len(train) == 900
    assert np.intersect1d(train, validation).size == 0
    np.testing.assert_array_equal(np.union1d(train, validation), np.arange(1000))
    again_train, again_validation = holdout.holdout_indices(1000, 0.1)
    np.testing.assert_array_equal(validation, again_validation)
    np.testing.assert_array_equal(train, again_train)
    # Spread over the whole split, not its first or last block (the embedded digits are label-sorted).
    assert validation.min() < 100 and validation.max() > 900
    assert len(holdout.holdout_indices(10, 0.01)[1]) == 1  # at least one example
    train_all, none = holdout.holdout_indices(7, 0.0)
    np.testing.assert_array_equal(train_all, np.arange(7))
    assert none.size == 0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_holdout_rejects_fractions_outside_the_unit_interval(fraction):
    with pytest.raises(ValueError, match="validation fraction"):
        holdout.holdout_indices(100, fraction)


def test_holdout_rejects_a_split_with_nothing_left_to_train():
    with pytest.raises(ValueError, match="none to train on"):
        holdout.holdout_indices(1, 0.5)


class _Records:
    """A random-access source whose record i has label i (no batched read)."""

    def __len__(self):
        return 50

    def __getitem__(self, index):
        return {"image": np.full((2, 2, 1), index, np.uint8), "label": index}


def test_subsets_read_their_own_records_through_the_eval_pipeline():
    train, validation = holdout.split_source(_Records(), 0.2)
    assert (len(train), len(validation)) == (40, 10)
    batches = list(pipeline.make_eval_iterator(validation, global_batch_size=4, mean=np.zeros(1), std=np.ones(1)))
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    np.testing.assert_array_equal(labels, validation.indices)
    assert set(labels).isdisjoint(int(train[i]["label"]) for i in range(len(train)))
    assert holdout.split_source(_Records(), 0.0)[1] is None
    with pytest.raises(ValueError, match="subset indices"):
        holdout.IndexSubset(_Records(), [0, 50])


def test_evaluation_source_picks_the_split_and_names_the_valid_ones():
    from jaxvision.training import loop

    pick = lambda split, held_out="V": loop.evaluation_source(  # noqa: E731
        split, load_test=lambda: "T", load_training=lambda: ("A", held_out))
    assert (pick("test"), pick("validation")) == ("T", "V")
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        pick("validation", held_out=None)
    with pytest.raises(ValueError, match="valid: 'test', 'validation'"):
        pick("dev")
