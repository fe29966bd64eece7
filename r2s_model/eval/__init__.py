"""Evaluation metrics of reasoning segmentation."""
