"""Bag and replay tools around the node: simulated scans and the scan bags of `r2s-make-bag`,
`r2s-replay` (offline and live) with its scoring and reports, and `r2s-demo`. Unlike the node's
runtime modules beside this package, these may use the benchmark generator, its files and its
metrics (`r2s_model.synthetic`, `r2s_model.data`, `r2s_model.eval`)."""
