"""The papers' evaluations as benchmarks: one module per benchmark, shared metrics and tables.

- :mod:`.metrics`: map normalisation, IoU threshold sweeps (localization), micro and macro accuracy.
- :mod:`.tables`: results tables written as markdown and JSON.
- :mod:`.localization`: unsupervised localization (CMI, MI, attention, attention at information
  noise levels, whole image) on the shapes world and COCO-IT.
- :mod:`.compositional`: compositional understanding (ARO and the shapes world's swap sets).
- :mod:`.localization_run`, :mod:`.compositional_run`: their items, resumable runs and tables
  (``diffpid bench localization`` / ``diffpid bench compositional``, whose arguments live in
  :mod:`diffpid.cli.bench`).
- :mod:`.common`: the model argument of every bench, its facts for the tables, and the
  per-item :class:`~diffpid.settings.Settings` (every bench takes one ``settings``).
- :mod:`.intervention` (+ :mod:`.intervention_run`): prompt intervention, image change after
  omitting or swapping a word against its CMI and attention (``diffpid bench intervention``).
- :mod:`.pid_studies`, :mod:`.uniqueness` (+ :mod:`.pid_studies_run`; commands in :mod:`diffpid.cli.studies`):
  DiffusionPID's bias, synonym, homonym and uniqueness-map studies (``diffpid bench bias`` ...).
- :mod:`.correlation`: Pearson, Spearman, bootstrap errors (a study runs through the resumable
  store of :mod:`diffpid.runs.study`); :mod:`.shapes_oracle`: the exact single-object denoiser of
  the shapes world (``--model shapes-oracle``).
"""
