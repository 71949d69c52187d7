"""One module per measure; each declares ``MEASURE`` (bench/measure.py), listed in bench/registry.py."""
