"""Datasets: list-file formats, the embedded demo set, IDX / CIFAR folders, validation."""

from hashguard.data.base import ArrayDataset, DatasetSplits, HashingDataset, SubsetDataset, carve_validation

__all__ = ["ArrayDataset", "DatasetSplits", "HashingDataset", "SubsetDataset", "carve_validation"]
