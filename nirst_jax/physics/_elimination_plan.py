"""Symbolic analysis for the multifrontal solver: a geometric nested-dissection tree.

The unknowns (mesh nodes) are split recursively, at the median of their longer coordinate
extent, into two halves and a vertex separator (the nodes of one half that touch the other).
This gives a complete binary elimination tree: leaves are small subdomains, inner supernodes are
separators, and two coupled unknowns always share a supernode or lie on one root path. All
supernodes of one tree level are padded to common sizes, so the numeric phase is one batched
dense step per level, and data moves between levels by precomputed gathers only.

Everything here is NumPy and runs once per mesh; the result is an `EliminationPlan` whose index
arrays drive the jit-compiled numeric phase in `_multifrontal.py`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np


class LevelPlan(eqx.Module):
    """Index maps for the supernodes of one tree level.

    A supernode's front has `n_pivot` pivot slots (its own unknowns, padded) followed by
    `n_update` update slots (the ancestor unknowns it couples to, padded).

    Attributes:
        entry_ids: indices of the COO entries that are assembled into this level's fronts.
        entry_targets: flat index of each of those entries in the (n_super, front, front)
            storage of this level.
        pivot_nodes: (n_super, n_pivot) global index of each pivot slot; `n` for padding.
        pad_diagonal: flat indices, in this level's (n_super, front, front) storage, of the
            diagonal of padded pivot slots (set to 1 so that they are inert).
        matrix_gather: (2, n_super, front, front) flat indices into the zero-padded update
            matrices of the level below, one per child (extend-add as a gather).
        vector_gather: (2, n_super, front) the same for update vectors (forward solve).
        parent_gather: (n_super, n_update) flat index of each update slot in the zero-padded
            front vectors of the level above (backward solve).
    """

    entry_ids: jnp.ndarray
    entry_targets: jnp.ndarray
    pivot_nodes: jnp.ndarray
    pad_diagonal: jnp.ndarray
    matrix_gather: jnp.ndarray | None
    vector_gather: jnp.ndarray | None
    parent_gather: jnp.ndarray | None
    n_super: int = eqx.field(static=True)
    n_pivot: int = eqx.field(static=True)
    n_update: int = eqx.field(static=True)

    @property
    def front_size(self) -> int:
        return self.n_pivot + self.n_update

    @property
    def storage_size(self) -> int:
        return self.n_super * self.front_size**2


class EliminationPlan(eqx.Module):
    """Nested-dissection plan for a symmetric sparse matrix with a fixed pattern.

    The matrix is given as COO entries `(rows[k], cols[k])` with duplicates summed (for a FEM
    matrix: every entry of every element matrix).

    Attributes:
        levels: `LevelPlan`s ordered from the deepest level (leaves) to the root.
        solution_gather: (n,) position of every unknown in the concatenated pivot slots.
        n: number of unknowns.
    """

    levels: tuple[LevelPlan, ...]
    solution_gather: jnp.ndarray
    n: int = eqx.field(static=True)

    @property
    def depth(self) -> int:
        return len(self.levels) - 1


def _neighbours(n: int, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    off = rows != cols
    pairs = np.unique(np.stack([rows[off], cols[off]], 1), axis=0)
    starts = np.searchsorted(pairs[:, 0], np.arange(n + 1))
    return [pairs[starts[i] : starts[i + 1], 1] for i in range(n)]


def _dissect(points: np.ndarray, neighbours: list[np.ndarray], depth: int) -> np.ndarray:
    """Heap-numbered supernode id (root = 1) of every node for a complete tree of `depth`."""
    n = len(points)
    supernode = np.zeros(n, np.int64)
    in_right = np.zeros(n, bool)

    def split(members: np.ndarray, heap_id: int, level: int):
        if level == depth or len(members) == 0:
            supernode[members] = heap_id
            return
        xy = points[members]
        axis = int(np.argmax(np.ptp(xy, axis=0)))
        order = np.argsort(xy[:, axis], kind="stable")
        half = len(members) // 2
        left, right = members[order[:half]], members[order[half:]]
        in_right[right] = True
        # Nodes outside `members` belong to ancestor separators: only couplings between the
        # two halves need cutting.
        on_separator = np.array([in_right[neighbours[i]].any() for i in left], dtype=bool)
        in_right[right] = False
        supernode[left[on_separator]] = heap_id
        split(left[~on_separator], 2 * heap_id, level + 1)
        split(right, 2 * heap_id + 1, level + 1)

    split(np.arange(n), 1, 0)
    return supernode


def _tree_level(heap_id):
    return np.floor(np.log2(heap_id)).astype(np.int64)


def build_elimination_plan(
    points: np.ndarray, rows: np.ndarray, cols: np.ndarray, *, leaf_size: int = 32
) -> EliminationPlan:
    """Nested-dissection plan for a symmetric matrix with the COO pattern `(rows, cols)`.

    Arguments:
        points: (n, 2) coordinates of the unknowns (the mesh nodes), used for the bisection.
        rows, cols: (nnz,) COO pattern of the matrix; duplicates allowed; must be symmetric.
        leaf_size: target number of unknowns per leaf subdomain.

    Returns:
        The `EliminationPlan`.
    """
    n = len(points)
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    if leaf_size < 1:
        raise ValueError(f"leaf_size must be positive, got {leaf_size}")
    depth = max(0, int(np.ceil(np.log2(max(n, 1) / leaf_size))))
    neighbours = _neighbours(n, rows, cols)
    supernode = _dissect(np.asarray(points, np.float64), neighbours, depth)
    n_heap = 2 ** (depth + 1)  # heap ids 1 .. n_heap - 1
    node_level = _tree_level(supernode)

    pivots = [[] for _ in range(n_heap)]
    for node, s in enumerate(supernode):
        pivots[s].append(node)
    pivots = [np.array(p, np.int64) for p in pivots]

    # Update sets, bottom-up: the ancestor unknowns coupled to each supernode's subtree.
    updates = [np.zeros(0, np.int64) for _ in range(n_heap)]
    for s in range(n_heap - 1, 0, -1):
        level = int(_tree_level(s))
        coupled = [updates[c] for c in (2 * s, 2 * s + 1) if c < n_heap]
        coupled += [neighbours[i] for i in pivots[s]]
        cand = np.unique(np.concatenate(coupled)) if coupled else np.zeros(0, np.int64)
        cand_level = node_level[cand]
        shift = np.maximum(level - cand_level, 0)
        is_ancestor = (cand_level < level) & ((s >> shift) == supernode[cand])
        updates[s] = cand[is_ancestor]

    levels_desc = list(range(depth, -1, -1))
    ids = {lv: range(2**lv, 2 ** (lv + 1)) for lv in levels_desc}
    n_pivot = {lv: max(1, max(len(pivots[s]) for s in ids[lv])) for lv in levels_desc}
    n_update = {lv: max(len(updates[s]) for s in ids[lv]) for lv in levels_desc}
    front = {lv: n_pivot[lv] + n_update[lv] for lv in levels_desc}

    # Front slot of every unknown in every front that holds it.
    slot = {}
    for s in range(1, n_heap):
        lv = int(_tree_level(s))
        slot[s] = {int(g): k for k, g in enumerate(pivots[s])}
        slot[s].update({int(g): n_pivot[lv] + k for k, g in enumerate(updates[s])})

    # Each COO entry lands in the front of the deeper supernode of its two unknowns.
    owner = np.where(node_level[rows] >= node_level[cols], supernode[rows], supernode[cols])
    owner_level = _tree_level(owner)
    entry_targets = np.empty(len(rows), np.int64)
    for k, (s, i, j) in enumerate(zip(owner.tolist(), rows.tolist(), cols.tolist())):
        lv = int(_tree_level(s))
        f = front[lv]
        entry_targets[k] = ((s - 2**lv) * f + slot[s][i]) * f + slot[s][j]

    level_plans = []
    pivot_offset = 0
    solution_gather = np.full(n, -1, np.int64)
    for lv in levels_desc:
        p, u, f = n_pivot[lv], n_update[lv], front[lv]
        n_super = 2**lv
        pivot_nodes = np.full((n_super, p), n, np.int64)
        pad_diag = []
        for local, s in enumerate(ids[lv]):
            k = len(pivots[s])
            pivot_nodes[local, :k] = pivots[s]
            solution_gather[pivots[s]] = pivot_offset + local * p + np.arange(k)
            pad_diag += [(local * f + a) * f + a for a in range(k, p)]
        pivot_offset += n_super * p

        matrix_gather = vector_gather = parent_gather = None
        if lv < depth:
            uc = n_update[lv + 1]  # children's updates are padded to (uc + 1) with zeros
            matrix_gather = np.empty((2, n_super, f, f), np.int64)
            vector_gather = np.empty((2, n_super, f), np.int64)
            for local, s in enumerate(ids[lv]):
                for which in range(2):
                    c = 2 * s + which
                    child_local = c - 2 ** (lv + 1)
                    child_pos = {int(g): k for k, g in enumerate(updates[c])}
                    where = np.full(f, uc, np.int64)
                    for g, k in child_pos.items():
                        where[slot[s][g]] = k
                    vector_gather[which, local] = child_local * (uc + 1) + where
                    matrix_gather[which, local] = (
                        child_local * (uc + 1) ** 2 + where[:, None] * (uc + 1) + where[None, :]
                    )
        if lv > 0:
            fp = front[lv - 1]  # parent front vectors are padded to (fp + 1) with a zero
            parent_gather = np.full((n_super, u), (2 ** (lv - 1)) * (fp + 1) - 1, np.int64)
            for local, s in enumerate(ids[lv]):
                parent = s // 2
                parent_local = parent - 2 ** (lv - 1)
                for k, g in enumerate(updates[s]):
                    parent_gather[local, k] = parent_local * (fp + 1) + slot[parent][int(g)]
                parent_gather[local, len(updates[s]) :] = parent_local * (fp + 1) + fp

        def as_index(a):
            return None if a is None else jnp.asarray(a, jnp.int32)

        entry_ids = np.flatnonzero(owner_level == lv)
        entry_ids = entry_ids[np.argsort(entry_targets[entry_ids], kind="stable")]
        level_plans.append(
            LevelPlan(
                entry_ids=as_index(entry_ids),
                entry_targets=as_index(entry_targets[entry_ids]),
                pivot_nodes=as_index(pivot_nodes),
                pad_diagonal=as_index(np.array(pad_diag, np.int64)),
                matrix_gather=as_index(matrix_gather),
                vector_gather=as_index(vector_gather),
                parent_gather=as_index(parent_gather),
                n_super=n_super,
                n_pivot=p,
                n_update=u,
            )
        )
    assert (solution_gather >= 0).all()
    return EliminationPlan(
        levels=tuple(level_plans),
        solution_gather=jnp.asarray(solution_gather, jnp.int32),
        n=n,
    )
