"""Scoring: metrics with intervals, segmentation and multi-class metrics, tables, plots, Grad-CAM
localisation and error analysis by nodule type."""
