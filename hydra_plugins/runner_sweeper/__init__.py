"""The runner's Hydra sweeper (``hydra/sweeper=runner``): see :mod:`runner.sweep.sweeper`."""
