"""Datasets. The contract is in ``txkit.datasets.base``: Split, TxDataset, load_gray."""
