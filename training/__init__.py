"""Training M2U-Net: data sets, augmentation, loss, metrics, the training loop and ONNX export.

Only this package (and ``segmentation/models``) imports torch; the metrics and data-set
modules are numpy-only so that ``retauth eval-seg`` runs without it.
"""
