"""Bounded asynchronous dispatch: a loop keeps at most `max_in_flight` jitted calls queued.

A jitted call returns before the device has run it, so a Python loop that never reads a result can
queue a whole epoch. XLA:CPU with several CPU devices (`jaxvision.training.cpu_devices`) aborts
such a queue when the program has collectives: measured with jax 0.10.2 on 2 CPU devices, the
LeNet-5 train step (one all-reduce) ran for minutes with up to 32 steps queued per read-back and
aborted within a minute with 33-40 ("Termination timeout for `all reduce` ... Expected 2 threads
to join the rendezvous"), every time (the other guard, two pool threads per device, is in
`jaxvision.training.cpu_devices`). Waiting for the call `max_in_flight` back keeps the queue
short while the host still runs ahead of the devices (batches load while steps compute).
"""

import collections

import jax

# Far below the ~32 queued executions per device at which XLA:CPU's collectives stall. Two keeps
# the next step queued while the host loads a batch; deeper queues were slower on 2 CPU devices
# (LeNet-5 step 45-47 ms with 1-4 in flight, 57 ms with 8 or 16) and no faster on one device.
MAX_IN_FLIGHT = 2


class DispatchWindow:
    """Track the outputs of dispatched calls; `admit` blocks on the oldest once more are queued."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT):
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self.max_in_flight = max_in_flight
        self._queued = collections.deque()

    def admit(self, outputs):
        """Record `outputs` of the call just dispatched (any pytree of arrays); return them."""
        self._queued.append(outputs)
        if len(self._queued) > self.max_in_flight:
            jax.block_until_ready(self._queued.popleft())
        return outputs

    @property
    def num_in_flight(self) -> int:
        """Calls admitted and not yet waited for (not `__len__`: an empty window is still a window)."""
        return len(self._queued)
