"""The engine every measure runs on: the noise channel and its log-SNR samplers (:mod:`.channel`) and the
batched, common-random-number estimation of information terms with their accumulators (:mod:`.estimate`)."""
