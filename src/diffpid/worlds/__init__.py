"""Synthetic worlds with known ground truth: scenes, captions, per-word masks, planted phenomena."""
