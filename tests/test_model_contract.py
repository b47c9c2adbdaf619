"""The model contract (mlipress.models.base) with a second potential family written in this file
only: a pair potential whose radial functions are a low-rank MF layer. It is fitted by the same
trainer as the MTP (variable projection: the linear solve works through ``features_fn``),
checkpointed and resumed bit-identically, and evaluated through the ASE calculator. Nothing
outside this file knows it exists: the proof that ACE or a magnetic MTP can move in."""

from __future__ import annotations

import dataclasses
import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Interrupted, interrupt_at

import mlipress  # noqa: F401  (float64)
from mlipress.calculator import MTPCalculator
from mlipress.examples import make_example_dataset
from mlipress.models import Model, Params, params_class
from mlipress.models.layers import MatrixFactorized
from mlipress.fit import TrainSettings, train


@params_class
class PairParams(Params):
    LINEAR = ("species", "weights")

    radial: MatrixFactorized  # f_k(r, z_i, z_j) = sum_b C[z_i, z_j, k, b] T_b(x) (rc - r)^2
    species: jax.Array  # (n_species,) energy per atom of each species
    weights: jax.Array  # (n_funcs,) E_i = species[z_i] + 1/2 sum_j sum_k weights_k f_k(r_ij)


@dataclasses.dataclass(frozen=True)
class PairModel:
    """E = sum_i species[z_i] + 1/2 sum_{i != j} sum_k w_k f_k(r_ij, z_i, z_j)."""

    n_species: int
    cutoff: float = 5.0
    n_funcs: int = 3
    n_basis: int = 6
    rank: int = 2
    coefficients: PairParams | None = dataclasses.field(default=None, compare=False)

    @property
    def trained(self) -> bool:
        return self.coefficients is not None

    def structure_key(self):
        return self

    def init(self, seed: int = 0) -> PairParams:
        radial = MatrixFactorized.random(seed, (self.n_species, self.n_funcs, self.n_basis), self.rank, scale=0.3)
        return PairParams(radial, jnp.zeros(self.n_species), jnp.zeros(self.n_funcs))

    def params(self) -> PairParams:
        return self.coefficients

    def with_params(self, params: PairParams) -> "PairModel":
        return dataclasses.replace(self, coefficients=params)

    def _site_energies(self, params, vectors, batch):
        r = jnp.sqrt(jnp.sum(jnp.where(batch.mask[..., None], vectors, 1.0) ** 2, axis=-1))
        x = 2.0 * r / self.cutoff - 1.0
        cheb = [jnp.ones_like(x), x]
        for _ in range(2, self.n_basis):
            cheb.append(2.0 * x * cheb[-1] - cheb[-2])
        Q = jnp.stack(cheb[: self.n_basis], -1) * (jnp.maximum(self.cutoff - r, 0.0) ** 2)[..., None]
        zi = jnp.broadcast_to(batch.types_i[:, None], batch.types_j.shape)
        f = params.radial.radial_values(Q.reshape(-1, self.n_basis), zi.reshape(-1), batch.types_j.reshape(-1))
        pair = (f @ params.weights).reshape(r.shape) * batch.mask
        V = params.species[batch.types_i] + 0.5 * pair.sum(axis=1)
        return jnp.where(batch.config_index < batch.n_configs, V, 0.0)

    def efs_fn(self):
        def efs(params, batch):
            n, A = batch.n_configs, batch.types_i.shape[0]

            def total(vectors):
                V = self._site_energies(params, vectors, batch)
                return V.sum(), V

            D, V = jax.grad(total, has_aux=True)(batch.vectors)
            D = D * batch.mask[..., None]
            forces = D.sum(axis=1) - jax.ops.segment_sum(D.reshape(-1, 3), batch.index_j.reshape(-1), A + 1)[:A]
            virial = jax.ops.segment_sum(-jnp.einsum("akx,aky->axy", D, batch.vectors), batch.config_index, n + 1)[:n]
            return {"energy": jax.ops.segment_sum(V, batch.config_index, n + 1)[:n], "energies": V,
                    "forces": forces, "virial": virial}

        return efs

    def features_fn(self):
        efs = self.efs_fn()

        def features(params, batch):
            # E, F and the virial are linear in params.linear: the Jacobian is the design matrix
            jac = jax.jacfwd(lambda theta: efs(params.with_linear(theta), batch))(params.linear)
            return jac["energy"], jac["forces"], jac["virial"]

        return features

    def penalty(self, params):
        return jnp.zeros(())

    def normalise(self, params):
        return params

    def write(self, path) -> None:
        arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(self.coefficients))}
        np.savez(path, n_species=self.n_species, cutoff=self.cutoff, n_funcs=self.n_funcs, n_basis=self.n_basis,
                 rank=self.rank, **arrays)

    @classmethod
    def read(cls, path) -> "PairModel":
        with np.load(path) as z:
            model = cls(int(z["n_species"]), float(z["cutoff"]), int(z["n_funcs"]), int(z["n_basis"]), int(z["rank"]))
            leaves = [jnp.asarray(z[f"leaf{i}"]) for i in range(4)]
        treedef = jax.tree_util.tree_structure(model.init(0))
        return model.with_params(jax.tree_util.tree_unflatten(treedef, leaves))


@pytest.fixture(scope="module")
def data():
    ds, species = make_example_dataset(8, seed=4)
    return ds, species


def test_pair_model_implements_the_contract():
    assert isinstance(PairModel(3), Model)


def test_pair_model_fits_checkpoints_and_runs_in_ase(data, tmp_path):
    ds, species = data
    model = PairModel(len(species))
    settings = TrainSettings(max_iter=12, log_every=4, ftol=0.0)
    log = io.StringIO()
    fit = train(model, ds, settings, out=log)
    first, last = fit.history[0], fit.history[-1]
    assert last["f"] < 0.5 * first["f"]  # the fit learns
    assert fit.state.iteration == 12 and "12/12" in log.getvalue()
    assert isinstance(fit.mtp, PairModel) and fit.mtp.trained
    fit.mtp.write(tmp_path / "pair.npz")
    back = PairModel.read(tmp_path / "pair.npz")
    for x, y in zip(jax.tree_util.tree_leaves(fit.params), jax.tree_util.tree_leaves(back.params())):
        assert np.array_equal(np.asarray(x), np.asarray(y))

    # checkpoint + resume ends bit-identical to the uninterrupted fit
    ckpt = tmp_path / "pair.ckpt.npz"
    s2 = dataclasses.replace(settings, checkpoint=str(ckpt), checkpoint_every=4)
    with pytest.raises(Interrupted):
        train(model, ds, s2, callback=interrupt_at(8), out=io.StringIO())
    again = train(model, ds, dataclasses.replace(s2, resume=True), out=io.StringIO())
    for x, y in zip(jax.tree_util.tree_leaves(fit.params), jax.tree_util.tree_leaves(again.params)):
        assert np.array_equal(np.asarray(x), np.asarray(y))

    # the ASE calculator: energy of a training configuration as the model computes it, forces
    # equal to minus the finite-difference gradient of that energy
    from ase import Atoms

    c = ds.configurations[0]
    atoms = Atoms([species[t] for t in c.types], positions=c.positions, cell=c.cell, pbc=True)
    atoms.calc = MTPCalculator(fit.mtp, species=species)
    e0 = atoms.get_potential_energy()
    f = atoms.get_forces()
    from mlipress.predict import predict

    (pred,), _ = predict(fit.mtp, [c])
    assert e0 == pytest.approx(pred.energy, rel=1e-12)
    h, (i, k) = 1e-5, (1, 2)
    shifted = []
    for sign in (1, -1):
        a = atoms.copy()
        a.positions[i, k] += sign * h
        a.calc = MTPCalculator(fit.mtp, species=species)
        shifted.append(a.get_potential_energy())
    assert f[i, k] == pytest.approx(-(shifted[0] - shifted[1]) / (2 * h), rel=1e-6, abs=1e-8)
