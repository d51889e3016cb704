"""A reproducibility fingerprint of a parameter pytree.

`params_fingerprint` is the SHA-256 of every leaf's path, dtype, shape and raw bytes, visited in
sorted path order, so anyone can check that two runs ended with bitwise-identical parameters.
"""

import hashlib

import jax
import numpy as np


def params_fingerprint(params) -> str:
    """Hex SHA-256 of `params` (leaves fetched to host; order independent of dict insertion)."""
    leaves_with_paths = jax.tree_util.tree_flatten_with_path(params)[0]
    entries = sorted((jax.tree_util.keystr(path), leaf) for path, leaf in leaves_with_paths)
    digest = hashlib.sha256()
    for path, leaf in entries:
        array = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{path}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
