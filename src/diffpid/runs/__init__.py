"""Dataset-scale runs: the crash-safe store (:mod:`.store`), the resumable runner sharded with accelerate
(:mod:`.runner`), a run's state read back (:mod:`.summary`), ``diffpid run`` over an item file
(:mod:`.words`) and the benches' resumable studies (:mod:`.study`)."""
