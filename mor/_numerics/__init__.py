"""Numerical kernels below every other layer: Lanczos and tridiagonal eigensolvers, dense SVD,
frequency grids and responses, impulse and DTFT kernels, Gramian factors, Levenberg-Marquardt,
golden-section search and the worker-thread map. Private: nothing here is public API."""

# Registered before any kernel can compile: counts mor's Numba compilations and announces the
# first one in a process (`mor._numerics.compilation`); and OpenMP's wait policy set before
# Numba's first parallel region loads the runtime (`mor._numerics.parallel`).
from mor._numerics import compilation as _compilation  # noqa: E402,F401
from mor._numerics import parallel as _parallel  # noqa: E402,F401
