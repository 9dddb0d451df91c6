"""Datasets: list-file formats, the embedded demo set, IDX / CIFAR folders, validation.

``open_dataset(source, root=None, image_size=None, seed=0, **options)`` is the one entry point;
``describe_sources()`` lists the sources and their options.
"""

# the dataset sources (each registers itself on SOURCES; a new source is one file and one line here)
from hashguard.data import cifar, demo, idx, listfile  # noqa: E402, F401, I001
from hashguard.data.base import ArrayDataset, DatasetSplits, HashingDataset, SubsetDataset, carve_validation
from hashguard.data.memory import InMemoryDataset
from hashguard.data.sources import SOURCES, describe_sources, open_dataset
from hashguard.data.transforms import preprocess_image

__all__ = [
    "ArrayDataset",
    "DatasetSplits",
    "HashingDataset",
    "InMemoryDataset",
    "SOURCES",
    "SubsetDataset",
    "carve_validation",
    "describe_sources",
    "open_dataset",
    "preprocess_image",
]
