"""Encoder backbones for the segmentation models (torch only)."""
