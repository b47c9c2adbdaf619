"""What the ``mlipress`` commands share: options, and the one way they read their inputs.

Contract: a command reads configurations only through :func:`read_data` (one species map for
all of its files, type indices checked against the potential by :func:`check_data`, errors
that name the file) and structures only through :func:`load_structure`; options that several
commands take are added here, so they have one spelling, one default and one help text.
Library modules never import this package.
"""

from __future__ import annotations

import argparse

SPECIES_HELP = "element of each type index, in type order, e.g. Nb,Mo,Ta,W (.mtp and .cfg files store only indices)"

#: option -> (type, default, help) of a fresh untrained potential (``init``, ``train``, ``sweep``).
FRESH_POTENTIAL: dict[str, tuple[type, object, str]] = {
    "species_count": (int, None, "number of species of a fresh potential (default: from --species or the data)"),
    "cutoff": (float, 5.0, "max_dist of a fresh potential in Angstrom (default 5.0)"),
    "min_dist": (float, 1.5, "min_dist of a fresh potential in Angstrom (default 1.5)"),
}


#: option -> (type, default, help) of a fresh ACE (``init --model ace``, ``train --model ace``).
FRESH_ACE: dict[str, tuple[type, object, str]] = {
    "body_order": (int, 4, "ACE: body order of the B-functions, 2..5 (default 4: products of up to 3 A)"),
    "nk": (int, 9, "ACE: radial basis size N_k (default 9)"),
    # default None (= ChebExpCos) so that train can tell a --radbase given with --init, which it refuses
    "radbase": (str, None, "ACE: radial basis g_k, pacemaker's radbase: ChebExpCos (default) | SBessel "
                "(simplified spherical Bessel functions; docs/ace.md)"),
    "nrad": (int, 3, "ACE: radial functions per degree N_rad (default 3)"),
    "lmax": (int, 2, "ACE: largest degree L (default 2)"),
    "nmax_by_rank": (str, None, "ACE: n_max for ranks 2, 3, ... as a list, e.g. 3,2 (default N_rad at every rank)"),
    "lmax_by_rank": (str, None, "ACE: l_max for ranks 2, 3, ... as a list, e.g. 2,1 (default L at every rank)"),
    "coupling": (str, None, "ACE: coupling of the B-functions: exact (generalised Clebsch-Gordan, default) | cp:R "
                 "(each coupling in rank-R CP form, factors fitted once and frozen; docs/ace.md)"),
}


def coefficient_l2(value, model) -> float:
    """``--coefficient-l2``: the value given, else the model's default (``DEFAULT_COEFFICIENT_L2``,
    an ACE's 1e-8; 0 for an MTP, as MLIP)."""
    return float(value) if value is not None else float(getattr(model, "DEFAULT_COEFFICIENT_L2", 0.0))


COEFFICIENT_L2_HELP = ("L2 regularisation of the linear coefficients, species energies exempt "
                       "(default: 0 for MTP, 1e-8 for ACE)")


def coefficient_l2_option(parser) -> None:
    parser.add_argument("--coefficient-l2", dest="coefficient_l2", type=float, default=None, help=COEFFICIENT_L2_HELP)


def fresh_ace(species, cutoff: float, options: dict):
    """An untrained ACE from the :data:`FRESH_ACE` options (``species`` names the elements)."""
    from mlipress.io import parse_species
    from mlipress.models.ace import untrained_ace

    elements = parse_species(species)
    if not elements:
        raise ValueError("an ACE potential names its elements: give --species Nb,Mo,...")

    def ints(text):
        return None if not text else [int(x) for x in str(text).split(",")]

    return untrained_ace(elements, options["body_order"], options["nk"], options["nrad"], options["lmax"], cutoff,
                         ints(options["nmax_by_rank"]), ints(options["lmax_by_rank"]),
                         coupling=ace_coupling(options.get("coupling")), radbase=ace_radbase(options.get("radbase")))


def ace_radbase(name) -> str:
    """The ``--radbase`` of a fresh ACE (``ChebExpCos`` when not given); another name is a
    ``ValueError`` naming the option."""
    from mlipress.models.ace.radial import RADIAL_BASES

    name = "ChebExpCos" if name is None else str(name)
    if name not in RADIAL_BASES:
        raise ValueError(f"--radbase: {name!r} is not a radial basis mlipress implements ({' | '.join(RADIAL_BASES)})")
    return name


def ace_coupling(spec) -> str:
    """The canonical ``--coupling`` of an ACE (``exact`` when not given); a bad value is a
    ``ValueError`` naming the option."""
    from mlipress.models.ace.coupling import parse_ace_coupling

    try:
        return parse_ace_coupling("exact" if spec is None else spec)
    except ValueError as exc:
        raise ValueError(f"--coupling: {exc}") from None


def describe(model) -> str:
    """One line on a potential's size, for any family."""
    n = model.num_params()
    return f"{type(model).__name__}, {model.n_species} species, {n['total']} parameters ({n['radial']} radial)"


def flag(name: str) -> str:
    """``species_count`` -> ``--species-count``."""
    return "--" + name.replace("_", "-")


def species_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--species", default=None, help=SPECIES_HELP)


def fresh_potential_options(p: argparse.ArgumentParser) -> None:
    """``--species-count``, ``--cutoff`` and ``--min-dist`` of a fresh potential."""
    for name, (typ, default, text) in FRESH_POTENTIAL.items():
        p.add_argument(flag(name), dest=name, type=typ, default=default, help=text)


def species_count(given: int | None, species, *datasets) -> int | None:
    """Species of a fresh potential: ``given`` (``--species-count``), else the length of the
    species map, else one more than the largest type index of ``datasets`` (None without)."""
    from mlipress.io import parse_species

    species = parse_species(species)
    if given:
        return given
    if species:
        return len(species)
    return max(d.max_type for d in datasets) + 1 if datasets else None


def check_data(mtp, data, path) -> None:
    """A clear error, naming ``path``, when ``data`` uses a type the potential lacks."""
    from mlipress.predict import check_types

    check_types(mtp, data, str(path))


def read_data(path, species=None, mtp=None):
    """The :class:`~mlipress.data.Dataset` in ``path`` (``.cfg``, maml ``.json``, any ASE
    format) under the species map ``species`` (``"Nb,Mo"``, a sequence or None); with
    ``mtp``, its types are checked against the potential (:func:`check_data`). Every error
    names the file."""
    from mlipress.io import parse_species, read_dataset
    from mlipress.io.errors import FileFormatError

    species = parse_species(species)
    elements = getattr(mtp, "elements", None)  # a family whose file names its elements (ACE)
    if species is None:
        species = elements
    elif elements is not None and tuple(species) != tuple(elements):
        raise ValueError(f"--species {','.join(species)} differs from the potential's elements {','.join(elements)}")
    try:
        data = read_dataset(path, species=species)
    except FileFormatError:
        raise
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: {exc}") from exc
    if mtp is not None:
        check_data(mtp, data, path)
    return data


# -- structures (md, relax) -------------------------------------------------------------------


def repeat(text: str) -> tuple[int, int, int]:
    """``--repeat`` values: ``N`` or ``NX,NY,NZ`` (also ``NXxNYxNZ``)."""
    parts = [int(p) for p in text.replace("x", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"--repeat wants N or NX,NY,NZ (positive), got {text!r}")
    return tuple(parts)


def structure_options(p: argparse.ArgumentParser) -> None:
    """Structure, potential, species map, skin, pressure, supercell and ``--quiet``."""
    p.add_argument("structure", help="structure file (any ase.io.read format)")
    p.add_argument("potential", help=".mtp potential file")
    species_option(p)
    p.add_argument("--skin", type=float, default=0.5, help="neighbour list skin in A (default 0.5)")
    p.add_argument("--pressure", type=float, default=0.0, help="target pressure in GPa (default 0)")
    p.add_argument("--repeat", type=repeat, default=None, help="supercell, e.g. 2,2,2")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def load_structure(args):
    """``(atoms, calculator)``: the last frame of ``args.structure`` (repeated by ``--repeat``)
    and an :class:`~mlipress.calculator.MTPCalculator` with the ``--skin`` neighbour list."""
    from ase.io import read

    from mlipress.calculator import MTPCalculator

    atoms = read(args.structure, index=-1)
    if args.repeat:
        atoms = atoms.repeat(args.repeat)
    return atoms, MTPCalculator(args.potential, species=args.species, skin=args.skin)
