"""pacemaker's B-basis ``.yaml`` potential file for :class:`~mlipress.models.ace.ACE` (docs/ace.md).

Layout (the species-block format pacemaker writes as ``output_potential.yaml``): ``metadata``,
``global: {DeltaSplineBins}``, and a list ``species`` of blocks named by elements:

- ``speciesblock: X`` (one per element X, the central species): the embedding (``ndensityi: 1``,
  ``npoti: FinnisSinclairShiftedScaled``, ``parameters: [1, 1]``, i.e. ``F(rho) = rho``), the
  X-X bond (``nradmaxi``, ``lmaxi``, ``rcutij``, ``dcutij``, ``NameOfCutoffFunctionij: cos``,
  ``nradbaseij``, ``radbase: ChebExpCos`` or ``SBessel``, ``radparameters: [lambda]`` (used by
  ChebExpCos only), ``radcoefficients`` ``[n][l][k]``, ``core-repulsion: [0, 0]``) and the
  ``nbody`` functions of central X whose neighbours are all X;
- ``speciesblock: X Y`` (X central, Y another element): the X-Y bond and the functions of central
  X with neighbours from {X, Y} including Y; ``X Y Z``: functions with Y and Z, no bond.

An ``nbody`` entry is ``{type: "X mu_1 .. mu_v", nr: [...], nl: [...], lint: [...], c: [c~]}``
(``lint`` from rank 3; ``c`` one value per density). mlipress shares one radial tensor per
unordered pair, so the X-Y and Y-X blocks carry the same ``radcoefficients`` (a file where they
differ is refused). The per-species energies (not part of the format; pacemaker subtracts
reference energies from the data instead) are kept in ``metadata: mlipress_species_energies``, a
coupling other than the exact one (``cp:R``, :mod:`mlipress.models.ace.coupling`) in
``metadata: mlipress_coupling`` (pacemaker ignores it and evaluates the exact coupling).
Written atomically; errors name the file and the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlipress.io.atomic import atomic_write
from mlipress.io.errors import FileFormatError
from mlipress.models.ace.basis import BFunction
from mlipress.models.ace.coupling import parse_ace_coupling
from mlipress.models.ace.model import ACE
from mlipress.models.ace.radial import RADIAL_BASES, RadialBasisSpec, pair_index

__all__ = ["read_ace", "write_ace", "format_ace", "parse_ace", "is_ace_yaml"]

_EMBEDDING = {"ndensityi": 1, "npoti": "FinnisSinclairShiftedScaled", "parameters": [1, 1],
              "rho_core_cut": 100000, "drho_core_cut": 250}
_LINEAR_EMBEDDINGS = ("FinnisSinclair", "FinnisSinclairShiftedScaled")
#: ``global: DeltaSplineBins`` written: python-ace and LAMMPS interpolate the radial functions on
#: this grid; at pacemaker's default 0.001 their forces differ from the exact ones by up to ~2e-7
#: relative, at 0.0001 by ~1e-10 (measured with tests/test_ace_pyace.py's structures)
SPLINE_BINS = 0.0001


def _yaml():
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - a dependency
        raise ImportError("ACE .yaml files need PyYAML: pip install pyyaml") from e
    return yaml


def _bond(ace: ACE, C_pair: np.ndarray) -> dict:
    rb, L = ace.radial_basis, ace.lmax
    # C_pair (N_k, N_rad (L+1)) -> radcoefficients[n][l][k]
    rad = C_pair.reshape(rb.n_k, ace.nrad, L + 1).transpose(1, 2, 0)
    return {"nradmaxi": ace.nrad, "lmaxi": L, "rcutij": rb.cutoff, "dcutij": rb.dcut,
            "NameOfCutoffFunctionij": "cos", "r_in": 0, "delta_in": 0, "inner_cutoff_type": "distance",
            "nradbaseij": rb.n_k, "radbase": rb.kind, "radparameters": [rb.lam], "radcoefficients": rad.tolist(),
            "core-repulsion": [0, 0]}


class _Flow(dict):
    """A mapping written on one line (pacemaker's ``nbody`` entries)."""


def _dumper():
    yaml = _yaml()

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # no &id anchors: every list written out
            return True

    Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(),
                                                                      flow_style=True))
    return Dumper


def _entry(ace: ACE, central: int, fn: BFunction, c: float) -> dict:
    names = " ".join(ace.elements[k] for k in (central,) + fn.mus)
    out = {"type": names, "nr": list(fn.ns), "nl": list(fn.ls)}
    if fn.rank >= 3:
        out["lint"] = list(fn.lint)
    out["c"] = [float(c)]
    return _Flow(out)


def format_ace(ace: ACE) -> str:
    """The B-basis ``.yaml`` text of an ACE. An untrained one is written with its seed-0 start
    (:meth:`ACE.init`: zero ``c``) and ``metadata: mlipress_untrained: "true"``, read back untrained."""
    untrained = not ace.trained
    if untrained:
        ace = ace.with_params(ace.init(0))
    yaml = _yaml()
    pairs = pair_index(ace.n_species)
    species_e = ace.species_coeffs if ace.species_coeffs is not None else np.zeros(ace.n_species)
    blocks = []
    for i, elem in enumerate(ace.elements):
        groups: dict[tuple[int, ...], list] = {}
        for f, fn in enumerate(ace.functions):
            others = tuple(sorted(set(fn.mus) - {i}))
            groups.setdefault(others, []).append(_entry(ace, i, fn, ace.coeffs[i, f]))
        keys = [()] + [(j,) for j in range(ace.n_species) if j != i]
        keys += sorted(k for k in groups if len(k) > 1)
        for key in keys:
            block = {"speciesblock": " ".join(ace.elements[k] for k in (i,) + key)}
            if key == ():
                block.update(_EMBEDDING)
            if len(key) <= 1:
                j = key[0] if key else i
                block.update(_bond(ace, ace.radial_coeffs[pairs[i, j]]))
            block["nbody"] = groups.get(key, [])
            blocks.append(block)
    meta = {"generator": "mlipress",
            "mlipress_species_energies": " ".join(f"{e}={float(v)!r}" for e, v in zip(ace.elements, species_e))}
    if untrained:
        meta["mlipress_untrained"] = "true"
    if ace.coupling != "exact":
        meta["mlipress_coupling"] = ace.coupling
    doc = {"metadata": meta,
           "global": {"DeltaSplineBins": SPLINE_BINS}, "species": blocks}
    return yaml.dump(doc, Dumper=_dumper(), default_flow_style=None, sort_keys=False, width=1 << 30)


def write_ace(ace: ACE, path) -> None:
    """Write ``ace`` as a B-basis ``.yaml`` (atomically)."""
    atomic_write(path, format_ace(ace))


def is_ace_yaml(path) -> bool:
    """True for a ``.yaml``/``.yml`` file whose content has a pacemaker ``species:`` list."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
    except OSError:
        return False
    return "speciesblock" in head


def _need(block: dict, key: str, path, where: str):
    if key not in block:
        raise FileFormatError(path, f"missing {key!r}", field=f"{where}.{key}")
    return block[key]


def parse_ace(text: str, path="<string>") -> ACE:
    """An :class:`ACE` from B-basis ``.yaml`` text; :class:`FileFormatError` for what mlipress
    does not represent (non-linear embeddings, core repulsion, several cutoffs, ...)."""
    yaml = _yaml()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise FileFormatError(path, f"not valid YAML: {getattr(e, 'problem', e)}",
                              line=None if mark is None else mark.line + 1) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("species"), list):
        raise FileFormatError(path, "no 'species' list of speciesblocks (not a pacemaker B-basis .yaml)",
                              field="species")
    blocks = []
    for b, block in enumerate(doc["species"]):
        where = f"species[{b}]"
        if not isinstance(block, dict):
            raise FileFormatError(path, "a speciesblock must be a mapping", field=where)
        names = str(_need(block, "speciesblock", path, where)).split()
        blocks.append((where, names, block))
    elements = [names[0] for _, names, _ in blocks if len(names) == 1]
    if not elements:
        raise FileFormatError(path, "no single-element speciesblock", field="species")
    index = {e: k for k, e in enumerate(elements)}
    nt = len(elements)

    bonds: dict[tuple[int, int], tuple[str, dict]] = {}
    entries: dict[int, dict] = {i: {} for i in range(nt)}
    for where, names, block in blocks:
        for e in names:
            if e not in index:
                raise FileFormatError(path, f"element {e!r} has no speciesblock of its own", field=f"{where}.speciesblock")
        ids = [index[e] for e in names]
        if len(ids) == 1:
            nd = _need(block, "ndensityi", path, where)
            npot = _need(block, "npoti", path, where)
            par = [float(x) for x in _need(block, "parameters", path, where)]
            if nd != 1 or npot not in _LINEAR_EMBEDDINGS or par[:2] != [1.0, 1.0]:
                raise FileFormatError(path, f"embedding ndensityi={nd}, npoti={npot}, parameters={par}: mlipress "
                                      "implements the linear embedding only (ndensityi 1, parameters [1, 1])",
                                      field=f"{where}.npoti")
        if len(ids) <= 2 and "radcoefficients" in block:
            bonds[(ids[0], ids[-1])] = (where, block)
        for e, entry in enumerate(block.get("nbody") or []):
            fwhere = f"{where}.nbody[{e}]"
            try:
                types = [index[x] for x in str(entry["type"]).split()]
                fn = BFunction(types[1:], entry["nr"], entry["nl"], entry.get("lint", []))
                c = [float(x) for x in entry["c"]]
            except KeyError as err:
                raise FileFormatError(path, f"missing or unknown {err}", field=fwhere) from None
            except (TypeError, ValueError) as err:
                raise FileFormatError(path, str(err), field=fwhere) from None
            if len(c) != 1:
                raise FileFormatError(path, f"{len(c)} densities; mlipress implements ndensity 1", field=f"{fwhere}.c")
            if fn in entries[types[0]]:
                raise FileFormatError(path, f"duplicate B-function {fn}", field=fwhere)
            entries[types[0]][fn] = c[0]

    spec, nrad, lmax, C = _radial(bonds, nt, elements, path)
    functions = sorted(entries[0], key=BFunction.sort_key)
    for i in range(1, nt):
        if set(entries[i]) != set(functions):
            raise FileFormatError(path, f"central {elements[i]} has a different B-function list from {elements[0]}; "
                                  "mlipress uses one list for every central species", field="species")
    coeffs = np.array([[entries[i][fn] for fn in functions] for i in range(nt)])
    energies = np.zeros(nt)
    metadata = doc.get("metadata") or {}
    if str(metadata.get("mlipress_untrained", "")).lower() == "true":
        C = energies = coeffs = None
    elif metadata.get("mlipress_species_energies"):
        for item in str(metadata["mlipress_species_energies"]).split():
            name, _, value = item.partition("=")
            if name in index:
                energies[index[name]] = float(value)
    try:
        coupling = parse_ace_coupling(metadata.get("mlipress_coupling", "exact"))
    except ValueError as e:
        raise FileFormatError(path, str(e), field="metadata.mlipress_coupling") from None
    try:
        return ACE(tuple(elements), spec, nrad, lmax, tuple(functions), C, energies, coeffs, coupling)
    except ValueError as e:
        raise FileFormatError(path, str(e), field="species") from None


def _lambda(block: dict, path, where: str) -> float:
    """``radparameters[0]`` (ChebExpCos' lambda; 5.25, pacemaker's default, when absent or empty:
    SBessel has no parameter, and pacemaker writes its default there anyway)."""
    par = block.get("radparameters", [5.25])
    if not isinstance(par, list):
        raise FileFormatError(path, f"radparameters must be a list, got {par!r}", field=f"{where}.radparameters")
    try:
        return float(par[0]) if par else 5.25
    except (TypeError, ValueError):
        raise FileFormatError(path, f"radparameters[0] must be a number, got {par[0]!r}",
                              field=f"{where}.radparameters") from None


def _radial(bonds, nt, elements, path):
    first = None
    pairs = pair_index(nt)
    C = None
    for a in range(nt):
        for b in range(nt):
            if (a, b) not in bonds:
                raise FileFormatError(path, f"no bond (radcoefficients) for {elements[a]}-{elements[b]}", field="species")
            where, block = bonds[(a, b)]
            prehc = [float(x) for x in block.get("core-repulsion", [0, 0])]
            if prehc[0] != 0:
                raise FileFormatError(path, "core repulsion (prehc != 0) is not implemented", field=f"{where}.core-repulsion")
            if float(block.get("r_in", 0)) or float(block.get("delta_in", 0)):
                raise FileFormatError(path, "an inner cutoff (r_in, delta_in) is not implemented", field=f"{where}.r_in")
            if block.get("NameOfCutoffFunctionij", "cos") != "cos":
                raise FileFormatError(path, "only the cos cutoff function is implemented", field=f"{where}.NameOfCutoffFunctionij")
            radbase = str(block.get("radbase", "ChebExpCos"))
            if radbase not in RADIAL_BASES:
                raise FileFormatError(path, f"radial basis {radbase!r} is not implemented (mlipress evaluates "
                                      f"{', '.join(RADIAL_BASES)})", field=f"{where}.radbase")
            key = (float(_need(block, "rcutij", path, where)), int(_need(block, "nradbaseij", path, where)),
                   _lambda(block, path, where), float(block.get("dcutij", 0.01)), radbase,
                   int(_need(block, "nradmaxi", path, where)), int(_need(block, "lmaxi", path, where)))
            if first is None:
                first = key
                try:
                    spec = RadialBasisSpec(*key[:5])
                except ValueError as e:
                    raise FileFormatError(path, str(e), field=f"{where}.rcutij") from None
                nrad, lmax = key[5], key[6]
                C = np.full((nt * (nt + 1) // 2, spec.n_k, nrad * (lmax + 1)), np.nan)
            # SBessel ignores lambda and dcut (pacemaker writes them anyway): pairs may differ there
            elif (key if radbase == "ChebExpCos" else key[:2] + first[2:4] + key[4:]) != first:
                raise FileFormatError(path, f"bond settings {key} differ from {first}: mlipress uses one radial basis "
                                      "(cutoff, N_k, lambda, dcut, radbase, N_rad, L) for all pairs", field=f"{where}.rcutij")
            rad = np.asarray(block["radcoefficients"], dtype=np.float64)
            if rad.shape != (nrad, lmax + 1, spec.n_k):
                raise FileFormatError(path, f"radcoefficients of shape {rad.shape}, expected "
                                      f"[nradmax][lmax+1][nradbase] = {(nrad, lmax + 1, spec.n_k)}",
                                      field=f"{where}.radcoefficients")
            mat = rad.transpose(2, 0, 1).reshape(spec.n_k, -1)
            p = pairs[a, b]
            if np.isnan(C[p, 0, 0]):
                C[p] = mat
            elif not np.array_equal(C[p], mat):
                raise FileFormatError(path, f"radcoefficients of {elements[a]}-{elements[b]} and {elements[b]}-"
                                      f"{elements[a]} differ; mlipress shares one radial tensor per unordered pair",
                                      field=f"{where}.radcoefficients")
    return spec, nrad, lmax, C


def read_ace(path) -> ACE:
    """Read a B-basis ``.yaml`` (:func:`parse_ace`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise FileFormatError(path, f"cannot read: {e.strerror or e}") from None
    return parse_ace(text, path)
