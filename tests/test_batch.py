"""Neighbour batches (mlipress.batch): named fields, padding by name, the padding policy and the
skin neighbour list; the dependency rules of the package layout."""

from __future__ import annotations

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk

from mlipress.batch import (
    PADDING,
    NeighborBatch,
    Padding,
    SkinNeighborList,
    bucket_size,
    build_batch,
    pad,
)
from mlipress.data import Configuration, Dataset, as_dataset

PACKAGE = Path(__file__).resolve().parent.parent / "mlipress"


def cu(repeat=2, a=3.6, seed=0, rattle=0.05):
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return Configuration(atoms.positions, np.zeros(len(atoms), np.int64), np.array(atoms.cell))


def pair_set(batch: NeighborBatch):
    """(i, j) of every real pair and its vector, in a canonical order."""
    mask = np.asarray(batch.mask)
    i = np.nonzero(mask)[0]
    j = np.asarray(batch.index_j)[mask]
    d = np.asarray(batch.vectors)[mask]
    order = np.lexsort((np.round(d[:, 2], 6), np.round(d[:, 1], 6), np.round(d[:, 0], 6), j, i))
    return i[order], j[order], d[order]


def assert_same_pairs(a: NeighborBatch, b: NeighborBatch):
    ia, ja, da = pair_set(a)
    ib, jb, db = pair_set(b)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(ja, jb)
    np.testing.assert_allclose(da, db, atol=1e-12, rtol=0)


def test_padding_policy():
    assert bucket_size(17, 16) == 24 and bucket_size(16, 16) == 16
    assert PADDING.shape(32, 0) == (40, 8)  # 33 atoms -> 40; at least 8 slots
    assert PADDING.shape(32, 43) == (40, 44)
    grown = PADDING.grow((0, 0), 32, 43)
    assert grown == (40, 48)  # 4 slots of headroom when the shape grows
    assert PADDING.grow(grown, 30, 46) == grown  # fits: unchanged
    assert PADDING.grow(grown, 100, 10) == (120, 48)  # shapes only grow
    assert Padding(headroom=0).grow((0, 0), 32, 43) == (40, 44)


def test_replace_and_pad_by_name():
    configs = [cu(1, seed=1), cu(1, seed=2)]
    batch = build_batch(configs, 3.0)
    A, K = batch.n_atoms_padded, batch.n_neighbors_padded
    moved = batch.replace(vectors=batch.vectors * 2)
    assert moved.types_i is batch.types_i and moved.n_configs == 2
    np.testing.assert_array_equal(moved.vectors, 2 * batch.vectors)

    big = pad(batch, A + 5, K + 3)
    assert isinstance(big.vectors, np.ndarray)
    assert big.vectors.shape == (A + 5, K + 3, 3) and big.mask.shape == (A + 5, K + 3)
    # padded pairs point one past the (new) end, padded atoms belong to no configuration
    assert np.all(big.index_j[~big.mask] == A + 5)
    assert np.all(big.config_index[A:] == 2) and not big.mask[A:].any() and not big.mask[:, K:].any()
    np.testing.assert_array_equal(big.index_j[:A, :K][batch.mask], batch.index_j[batch.mask])
    assert_same_pairs(big, batch)
    assert np.all(pad(batch, A + 2, vectors=1.0).vectors[A:] == 1.0)
    with pytest.raises(ValueError, match="down"):
        pad(batch, A - 1)
    with pytest.raises(ValueError, match="unknown"):
        pad(batch, A, magnetic_moments=0.0)

    # inside jit, on JAX arrays
    traced = jax.jit(lambda b: pad(b, A + 8))(jax.tree.map(jnp.asarray, batch))
    host = pad(batch, A + 8)
    for name in ("vectors", "types_i", "types_j", "index_j", "mask", "config_index"):
        np.testing.assert_array_equal(np.asarray(getattr(traced, name)), getattr(host, name))


def test_padded_batch_evaluates_the_same(cu_level10_potential):
    from mlipress.models.base import jitted_efs
    from mlipress.io.mtp import read_mtp

    mtp = read_mtp(cu_level10_potential)
    efs, params = jitted_efs(mtp), mtp.params()
    batch = build_batch([cu(2, seed=3), cu(1, seed=4)], mtp.cutoff)
    n = 32 + 4
    a, b = efs(params, batch), efs(params, pad(batch, batch.n_atoms_padded + 13, batch.n_neighbors_padded + 4))
    np.testing.assert_allclose(np.asarray(a["energy"]), np.asarray(b["energy"]), atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.asarray(a["forces"])[:n], np.asarray(b["forces"])[:n], atol=1e-10, rtol=0)
    np.testing.assert_allclose(np.asarray(a["virial"]), np.asarray(b["virial"]), atol=1e-10, rtol=0)


@pytest.mark.parametrize("periodic", [True, False])
def test_skin_list_matches_fresh_search(periodic):
    rng = np.random.default_rng(0)
    config = cu(2, seed=5)
    cell = config.cell if periodic else None
    positions = config.positions
    skin, fresh = SkinNeighborList(4.0, skin=0.4), SkinNeighborList(4.0, skin=0.0)
    shapes = []
    for step in range(12):
        if step == 8 and periodic:
            cell = cell * 1.01
            positions = positions * 1.01
        c = Configuration(positions, config.types, cell)
        b = skin.batch(c)
        assert_same_pairs(b, build_batch([c], 4.0))
        assert_same_pairs(b, fresh.batch(c))
        shapes.append(skin.shape)
        positions = positions + rng.normal(scale=0.03, size=positions.shape)
    assert fresh.rebuilds == fresh.calls == 12
    assert 1 < skin.rebuilds < skin.calls == 12
    assert all(s1[0] <= s2[0] and s1[1] <= s2[1] for s1, s2 in zip(shapes, shapes[1:]))
    # a change of atom count or types forces a search
    before = skin.rebuilds
    skin.batch(Configuration(positions[:-1], config.types[:-1], cell))
    assert skin.rebuilds == before + 1
    with pytest.raises(ValueError, match="skin"):
        SkinNeighborList(4.0, skin=-1)


def test_as_dataset():
    ds = Dataset((cu(1),), ("Cu",))
    assert as_dataset(ds) is ds
    wrapped = as_dataset([cu(1), cu(1, seed=1)])
    assert isinstance(wrapped, Dataset) and len(wrapped) == 2 and wrapped.species is None


def test_read_data_names_the_file(tmp_path, capsys):
    from ase.io import write

    from mlipress.cli import main
    from mlipress.cli.common import read_data

    path = tmp_path / "ag.xyz"
    write(path, bulk("Ag", "fcc", a=4.1))
    with pytest.raises(ValueError, match="ag.xyz"):
        read_data(path, "Cu")
    assert main(["evaluate", "x.mtp", str(path), str(tmp_path / "o.cfg"), "--species", "Cu"]) == 2
    assert "x.mtp" in capsys.readouterr().err


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layout_dependencies():
    """The library never imports the command line, and no module imports another's private names."""
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        for module, names in _imports(path):
            if not module.startswith("mlipress"):
                continue
            if not name.startswith("mlipress.cli") and name != "mlipress.__main__":  # the entry points
                assert not module.startswith("mlipress.cli"), f"{name} imports {module}"
            if module != name:
                private = [n for n in names if n.startswith("_")]
                assert not private, f"{name} imports private {private} from {module}"
