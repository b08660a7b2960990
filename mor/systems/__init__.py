"""Systems: `ModalSSM` (modal banks), `StateSpace` (dense systems) and the versioned file schema
of banks (`mor.systems.schema`, on plain arrays). Imports only `mor._numerics` and
`mor.conventions`."""
