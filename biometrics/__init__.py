"""Retinal biometric features: vessel skeleton, junctions, vessel graph, template, pipeline, CLI."""
