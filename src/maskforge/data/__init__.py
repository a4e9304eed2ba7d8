"""Datasets: VOC layout, COCO 2014 and the synthetic set, all read into one Manifest."""

from .manifest import DatasetError, ImageRecord, Manifest
from .prepare import prepare_dataset

__all__ = ["DatasetError", "ImageRecord", "Manifest", "prepare_dataset"]
