"""mlipress: fit, compress and run Moment Tensor Potentials with low-rank radial parameters."""

import jax

# float64 everywhere: MTP moment products span many orders of magnitude, and agreement with
# MLIP to 1e-10 is impossible in float32. Set before any array is created.
jax.config.update("jax_enable_x64", True)

from mlipress.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy so that `import mlipress` stays cheap and lower layers never import higher ones.
    if name == "MTPCalculator":
        from mlipress.calculator import MTPCalculator

        return MTPCalculator
    if name in ("read_mtp", "write_mtp"):
        from mlipress.io import mtp

        return getattr(mtp, name)
    if name in ("read_dataset", "write_dataset"):
        from mlipress import io

        return getattr(io, name)
    raise AttributeError(f"module 'mlipress' has no attribute {name!r}")
