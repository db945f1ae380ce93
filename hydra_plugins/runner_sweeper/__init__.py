"""The runner's Hydra sweeper (Hydra loads plugins only from the ``hydra_plugins`` package):
``hydra/sweeper=basic`` with every job checked first; see :mod:`.checked_sweeper`."""
