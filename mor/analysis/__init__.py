"""Analysis of filters and models: the Hankel spectrum (`mor.analysis.spectrum`), the AAK and
balanced-truncation bounds (`mor.analysis.bounds`) and the error report (`mor.analysis.compare`).
Imports only `mor.systems`, `mor._numerics` and `mor.conventions`."""
