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

from _common import machine, mlearn, mlearn_dir, nbmotaw, nbmotaw_dir, write_result  # noqa: E402  (puts the repo on sys.path)

from mlipress.io.mtp import read_mtp  # noqa: E402
from mlipress.metrics import error_report, summary_row  # noqa: E402
from mlipress.predict import predict  # noqa: E402

PUBLISHED = {"Li": (0.49, 0.01), "Mo": (2.83, 0.09), "Si": (2.21, 0.06)}


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    rows = {}
    for element, (e_pub, f_pub) in PUBLISHED.items():
        mtp = read_mtp(mlearn_dir(element) / "zuo2020_fitted.mtp")
        test = mlearn(element, "test")
        t0 = time.perf_counter()
        pred, _ = predict(mtp, test.configurations)
        row = summary_row(error_report(test.configurations, pred))
        row.update(published_energy_mae_meV_per_atom=e_pub, published_force_mae_eV_per_A=f_pub,
                   seconds=time.perf_counter() - t0, basis_functions=mtp.moments.scalar_count)
        rows[f"zuo2020_{element}_test"] = row
        print(f"Zuo {element:2s} test: E MAE {row['energy_mae_meV_per_atom']:.2f} meV/atom (published {e_pub}), "
              f"F MAE {row['force_mae_eV_per_A']:.3f} eV/A (published {f_pub})", flush=True)

    yin = read_mtp(nbmotaw_dir() / "quaternary_yin2021.mtp")
    train_groups, valid_groups = nbmotaw()
    for name, test in (("validation (*_Test groups)", True), ("training groups", False)):
        data = valid_groups if test else train_groups
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
