"""Retinal vessel segmentation: image decoding, preprocessing and torch-free inference backends.

Importing this package never imports torch or tvm; the M2U-Net definition in
:mod:`segmentation.models` needs the ``train`` extra and is only used for training/export.
"""
