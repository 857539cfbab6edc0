"""The demo dataset: generated clips, VMAF labels, annotation files."""
