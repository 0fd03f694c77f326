"""One module per zoo model; each defines `MODEL`, a `benchmarks.zoo.spec.ZooModel`."""
