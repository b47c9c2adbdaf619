"""Errors of the published MTPs on the shared data (REFERENCE.md section 5).

- Zuo et al. 2020 MTPs (``mlearn/EL/zuo2020_fitted.mtp``) on their own ``test.json``, next to the
  published test MAEs;
- the quaternary MTP of Yin et al. 2021 (``nbmotaw/quaternary_yin2021.mtp``, types Nb Mo Ta W) on
  the NbMoTaW validation set (the unary and binary ``*_Test`` groups) and on all training
  groups: the floor a fit of ours must beat.

Usage: ``python benchmarks/reference_potentials.py`` -> ``benchmarks/results/reference_potentials.json``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _common import machine, shared_data, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.data import Dataset  # noqa: E402
from mlipress.io import read_maml_json  # noqa: E402
from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.metrics import error_report, summary_row  # noqa: E402
from mlipress.predict import predict  # noqa: E402

PUBLISHED = {"Li": (0.49, 0.01), "Mo": (2.83, 0.09), "Si": (2.21, 0.06)}
NBMOTAW_SPECIES = ("Nb", "Mo", "Ta", "W")




def nbmotaw_groups(folder: Path, test: bool) -> Dataset:
    files = sorted(p for p in folder.glob("*.json") if p.stem.endswith("_Test") == test)
    data = Dataset((), NBMOTAW_SPECIES)
    for path in files:
        data = data + read_maml_json(path, species=NBMOTAW_SPECIES)
    return data




def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    data_dir = shared_data()
    rows = {}
    for element, (e_pub, f_pub) in PUBLISHED.items():
        folder = data_dir / "mlearn" / element
        mtp = read_mtp(folder / "zuo2020_fitted.mtp")
        test = read_maml_json(folder / "test.json", species=(element,))
        t0 = time.perf_counter()
        pred, _ = predict(mtp, test.configurations)
        row = summary_row(error_report(test.configurations, pred))
        row.update(published_energy_mae_meV_per_atom=e_pub, published_force_mae_eV_per_A=f_pub,
                   seconds=time.perf_counter() - t0, basis_functions=mtp.moments.scalar_count)
        rows[f"zuo2020_{element}_test"] = row
        print(f"Zuo {element:2s} test: E MAE {row['energy_mae_meV_per_atom']:.2f} meV/atom (published {e_pub}), "
              f"F MAE {row['force_mae_eV_per_A']:.3f} eV/A (published {f_pub})", flush=True)

    yin = read_mtp(data_dir / "nbmotaw" / "quaternary_yin2021.mtp")
    for name, test in (("validation (*_Test groups)", True), ("training groups", False)):
        data = nbmotaw_groups(data_dir / "nbmotaw", test)
        t0 = time.perf_counter()
        pred, _ = predict(yin, data.configurations)
        row = summary_row(error_report(data.configurations, pred))
        row["seconds"] = time.perf_counter() - t0
        rows[f"yin2021_quaternary_{'valid' if test else 'train'}"] = row
        print(f"Yin 2021 quaternary on NbMoTaW {name}: {row['configurations']} configs, "
              f"E MAE {row['energy_mae_meV_per_atom']:.2f} meV/atom, F MAE {row['force_mae_eV_per_A']:.3f} eV/A, "
              f"E RMSE {row['energy_rmse_meV_per_atom']:.2f}, F RMSE {row['force_rmse_eV_per_A_component']:.3f}", flush=True)

    result = {"benchmark": "reference_potentials", "command": " ".join(sys.argv), "machine": machine(), "rows": rows}
    out = write_result("reference_potentials.json", result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
