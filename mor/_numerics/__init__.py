"""Numerical kernels below every other layer: Lanczos and tridiagonal eigensolvers, dense SVD,
frequency grids and responses, impulse and DTFT kernels, Gramian factors, Levenberg-Marquardt,
golden-section search and the worker-thread map. Private: nothing here is public API."""
