"""The torch side of the data path: from a dataset's splits to batches.

- :mod:`txkit.data.cache`: the decode-once image cache (memory-mapped ``.npy`` files shared by every run);
- :mod:`txkit.data.loader`: :class:`~txkit.data.loader.TensorSplit`, the epoch samplers and a run's loaders;
- :mod:`txkit.data.batch_ring`: the shared-memory slots loader workers write their batches into;
- :mod:`txkit.data.splits`: which images a run uses (fractions; the checks on a dataset's splits).

Below it is :mod:`txkit.datasets` (readers, DICOM, intensity rules: numpy); above it the training loop.
"""
