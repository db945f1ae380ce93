"""Datasets: builders that return a :class:`runner.data.base.DataBundle`, and the batch loader."""
