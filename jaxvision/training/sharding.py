"""Data parallelism with `jax.jit` + `NamedSharding` on a 1-D "data" mesh (no pmap).

The same code runs on 1 CPU, 8 simulated CPU devices, a TPU slice or several GPU hosts: the
batch is split along the "data" axis, the state is replicated, and XLA inserts the collectives.
Under jit, BatchNorm statistics are computed over the global batch without an `axis_name`.
Multi-host: each process passes its local slice to `make_array_from_process_local_data`.
"""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
    """A 1-D mesh over the first `num_devices` devices (0 = all), with an Auto axis.

    Auto, not jax>=0.9's Explicit default, because `flax.linen.Dropout` fails on Explicit meshes.
    """
    devices = jax.devices()
    if num_devices < 0 or num_devices > len(devices):
        raise ValueError(f"num_devices must be in [0, {len(devices)}], got {num_devices}")
    if num_devices == 0:
        num_devices = len(devices)
    if jax.process_count() > 1 and num_devices != len(devices):
        raise ValueError("multi-process runs must use every device (num_devices=0)")
    return jax.make_mesh(
        (num_devices,), (DATA_AXIS,),
        axis_types=(jax.sharding.AxisType.Auto,),
        devices=devices[:num_devices],
    )


def data_sharding(mesh) -> NamedSharding:
    """Split the leading (batch) axis over the mesh."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated_sharding(mesh) -> NamedSharding:
    """The same full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: dict, mesh) -> dict:
    """Place a process-local numpy batch on the mesh as global arrays split along the batch axis.

    Raises:
      ValueError: if the local batch does not divide evenly over this process's devices.
    """
    sharding = data_sharding(mesh)
    num_local = len(mesh.local_devices)

    def place(array):
        array = np.asarray(array)
        if array.shape[0] % num_local:
            raise ValueError(
                f"local batch size {array.shape[0]} must be divisible by the {num_local} local devices"
            )
        return jax.make_array_from_process_local_data(sharding, array)

    return jax.tree.map(place, batch)


def replicate(tree, mesh):
    """Put a pytree on every device of `mesh` (e.g. the initial train state)."""
    return jax.device_put(tree, replicated_sharding(mesh))
