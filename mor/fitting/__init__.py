"""Fitting residues and poles to filters: least-squares residues (`mor.fitting.least_squares`),
residues for a metric under a tail bound (`mor.fitting.constrained`, `mor.refit_residues`),
minimax residues (`mor.fitting.minimax`, `mor.refit`) and the variable projection of modal
fitting (`mor.fitting.varpro`), each beside its Numba kernels. Imports only the layers below
(`mor.analysis`, `mor.systems`, `mor._numerics`, `mor.conventions`)."""
