"""Data pipeline: annotations -> frame sampling -> decoding -> views -> normalisation."""
from datasets.kvq_datasets import KSVQEDataset, SimpleVQADataset, build_dataset, collate

__all__ = ["KSVQEDataset", "SimpleVQADataset", "build_dataset", "collate"]
