"""Drivers: `mor.reduce` (`mor.drivers.reduction`), `mor.select_order`
(`mor.drivers.selection`) and `mor.distill` (`mor.drivers.distillation`), which run the methods
of `mor.methods` over batches and report. Imports only the layers below."""
