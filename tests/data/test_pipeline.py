"""The grain pipeline: seeded per-epoch shuffling, resumable position, process slices, padding."""

import numpy as np
import pytest

from jaxvision.data import pipeline


class ArraySource:
    """A random-access source over numpy arrays (no `__getitems__`, to test that path too)."""

    def __init__(self, num_examples: int):
        self.images = np.arange(num_examples, dtype=np.uint8).reshape((-1, 1, 1, 1)).repeat(2, axis=1)
        self.labels = np.arange(num_examples) % 10

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"image": self.images[index], "label": self.labels[index]}


MEAN, STD = np.zeros(1, np.float32), np.full(1, 1 / 255, np.float32)  # image values = record ids


def ids(batch):
    return np.rint(batch["image"][:, 0, 0, 0]).astype(int).tolist()


def train_batches(source, **kwargs):
    defaults = dict(global_batch_size=4, num_steps=10, seed=3, mean=MEAN, std=STD)
    return [ids(b) for b in pipeline.make_train_iterator(source, **{**defaults, **kwargs})]


def test_epochs_cover_every_example_once_and_reshuffle():
    batches = train_batches(ArraySource(20))
    first_epoch, second_epoch = sum(batches[:5], []), sum(batches[5:], [])
    assert sorted(first_epoch) == list(range(20)) and sorted(second_epoch) == list(range(20))
    assert first_epoch != second_epoch and first_epoch != list(range(20))


def test_same_seed_same_order_other_seed_other_order():
    source = ArraySource(20)
    assert train_batches(source) == train_batches(source)
    assert train_batches(source) != train_batches(source, seed=4)


def test_restored_iterator_continues_exactly():
    source = ArraySource(20)
    expected = train_batches(source)
    iterator = pipeline.make_train_iterator(source, global_batch_size=4, num_steps=10, seed=3, mean=MEAN, std=STD)
    for _ in range(3):
        next(iterator)
    state = iterator.get_state()
    resumed = pipeline.make_train_iterator(source, global_batch_size=4, num_steps=10, seed=3, mean=MEAN, std=STD)
    resumed.set_state(state)
    assert [ids(b) for b in resumed] == expected[3:]


def test_process_slices_make_up_the_global_batch():
    source = ArraySource(24)
    whole = train_batches(source, global_batch_size=6, num_steps=4)
    parts = [train_batches(source, global_batch_size=6, num_steps=4, process_index=p, process_count=3) for p in range(3)]
    for step in range(4):
        assert sum((part[step] for part in parts), []) == whole[step]


def test_eval_pads_last_batch_and_masks_it():
    batches = list(pipeline.make_eval_iterator(ArraySource(10), global_batch_size=4, mean=MEAN, std=STD))
    assert [b["mask"].sum() for b in batches] == [4, 4, 2]
    assert sum((ids(b)[: int(b["mask"].sum())] for b in batches), []) == list(range(10))
    assert batches[0]["image"].dtype == np.float32 and batches[0]["label"].dtype == np.int32


def test_batch_must_split_over_processes():
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        pipeline.make_train_iterator(ArraySource(8), global_batch_size=5, num_steps=1, seed=0, mean=MEAN, std=STD,
                                     process_count=2)


def test_worker_processes_yield_the_same_batches():
    source = ArraySource(20)
    assert train_batches(source, num_steps=6, worker_count=1) == train_batches(source, num_steps=6)
