"""Vessel-segmentation networks (torch only; never imported on the verify path)."""
