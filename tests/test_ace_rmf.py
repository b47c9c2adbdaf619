"""R-MF for ACE: Riemannian BFGS on the product of the species pairs' fixed-rank manifolds
(mlipress.optim.fixed_rank_blocks) through the generic R-MF fit of mlipress.compress."""

from __future__ import annotations

import numpy as np

import mlipress  # noqa: F401  (float64)
from mlipress.models.ace import ACE, PairMatrixFactorized, untrained_ace


def test_rmf_fit_on_the_pairs_product_manifold_lowers_the_loss(tmp_path, capsys):
    """``--radial rmf:1`` on an ACE: Riemannian BFGS on one fixed-rank manifold per species pair
    (the generic R-MF fit; no ACE branch), every pair matrix kept at rank 1, the loss lowered;
    the command line writes the dense .yaml + factors."""
    from mlipress.cli import main
    from mlipress.compress import fit_compressed, read_compressed
    from mlipress.examples import make_example_dataset
    from mlipress.fit import TrainSettings
    from mlipress.io import write_dataset

    ds, species = make_example_dataset(3, seed=4)
    ace = untrained_ace(species, body_order=3, n_k=4, nrad=2, lmax=1, cutoff=4.5)
    res = fit_compressed(ace, ds, "rmf:1", TrainSettings(max_iter=6, log_every=1))
    values = [h["f"] for h in res.history if "f" in h]
    assert len(values) >= 3 and values[-1] < 0.999 * values[0] and np.all(np.diff(values) <= 0)
    assert isinstance(res.params.radial, PairMatrixFactorized) and res.params.radial.rank == 1
    assert np.all(np.linalg.matrix_rank(np.asarray(res.params.radial.dense()), tol=1e-10) == 1)
    data, out = tmp_path / "train.xyz", tmp_path / "rmf.yaml"
    write_dataset(ds, data, species=species)
    assert main(["train", "--model", "ace", "--species", ",".join(species), "--body-order", "3", "--nk", "4",
                 "--nrad", "2", "--lmax", "1", "--train", str(data), "--radial", "rmf:1", "--max-iter", "3",
                 "-o", str(out)]) == 0
    model, params, header = read_compressed(out)
    assert isinstance(model, ACE) and isinstance(params.radial, PairMatrixFactorized) and params.radial.rank == 1


def test_mfra_grows_every_pairs_rank_on_schedule_without_raising_the_loss():
    """``mfra:4`` on an ACE (the generic MFRA, blockwise: every pair matrix enlarged by the top
    singular triplets of its own gradient, one common step): ranks 2 -> 4 at iteration 2, the
    loss never higher after an augmentation than before."""
    from mlipress.compress import fit_compressed
    from mlipress.examples import make_example_dataset
    from mlipress.fit import TrainSettings

    ds, species = make_example_dataset(3, seed=4)
    ace = untrained_ace(species, body_order=3, n_k=4, nrad=2, lmax=1, cutoff=4.5)
    res = fit_compressed(ace, ds, "mfra:4", TrainSettings(max_iter=5, log_every=1), mfra_interval=2)
    assert [r for _, r in res.rank_history][:2] == [2, 4] and res.rank_history[1][0] == 2
    values = [h["f"] for h in res.history if "f" in h]
    assert np.all(np.diff(values) <= 1e-15 * abs(values[0])) and values[-1] < values[0]
    assert isinstance(res.params.radial, PairMatrixFactorized) and res.params.radial.rank == 4
