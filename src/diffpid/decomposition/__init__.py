"""Partial information decomposition of two words: pointwise PID and CPID (:mod:`.pid`), the sources and
four conditions they need (:mod:`.sources`), and the dataset-level decomposition (:mod:`.dataset`).

The package is not called ``pid`` so that ``diffpid.pid`` is always the function, never a module."""
