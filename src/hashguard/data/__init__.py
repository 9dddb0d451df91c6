"""Datasets: list-file formats, the embedded demo set, IDX / CIFAR folders, validation.

``open_dataset(source, root=None, image_size=None, seed=0, **options)`` is the one entry point;
``describe_sources()`` lists the sources and their options.
"""

from hashguard.data.base import ArrayDataset, DatasetSplits, HashingDataset, SubsetDataset, carve_validation
from hashguard.data.memory import InMemoryDataset
from hashguard.data.sources import describe_sources, open_dataset
from hashguard.data.transforms import preprocess_image

__all__ = [
    "ArrayDataset",
    "DatasetSplits",
    "HashingDataset",
    "InMemoryDataset",
    "SubsetDataset",
    "carve_validation",
    "describe_sources",
    "open_dataset",
    "preprocess_image",
]
