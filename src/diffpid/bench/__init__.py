"""The papers' evaluations as benchmarks: one module per benchmark, shared metrics and tables.

- :mod:`.metrics`: map normalisation, IoU threshold sweeps (localization), micro and macro accuracy.
- :mod:`.tables`: results tables written as markdown and JSON.
- :mod:`.localization`: unsupervised localization (CMI, MI, attention, attention at information
  noise levels, whole image) on the shapes world and COCO-IT.
- :mod:`.compositional`: compositional understanding (ARO and the shapes world's swap sets).
"""
