"""Engine tests: a real Docker engine, compose and registry (marked ``engine``)."""
