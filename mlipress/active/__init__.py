"""Active learning: MaxVol extrapolation grades, selection and learning on the fly.

- :mod:`.maxvol`: the MaxVol algorithm on plain matrices;
- :mod:`.grade`: MLIP-2's rows (energy derivatives) of a model, active sets, grades, selection;
- :mod:`.state`: the active set saved next to a potential (a sidecar file);
- :mod:`.als`: MLIP-2's ``.als`` active-learning state, written for MLIP-2 and read back.

The definitions and MLIP-2 compatibility are in docs/active_learning.md.
"""

from mlipress.active.grade import GradeSettings, build_active_set, energy_rows, grade, select
from mlipress.active.maxvol import ActiveSet, grades, maxvol, mlip_start, qr_start

__all__ = ["ActiveSet", "GradeSettings", "build_active_set", "energy_rows", "grade", "grades", "maxvol",
           "mlip_start", "qr_start", "select"]
