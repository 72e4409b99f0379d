"""The engine every measure runs on: the noise channel and its log-SNR samplers (:mod:`.channel`) and the
batched, common-random-number estimation of information terms with their accumulators (:mod:`.estimate`).
The inner loop (:mod:`.chunks`) draws from counter-based streams (:mod:`.streams`) on the device and keeps
its sums there (:mod:`.accumulate`), with the precision stopping rule."""
