"""The study record: reads and writes the Optuna storage, and says what a trial's numbers, spread, standing, fidelity
and final results are. No Ray, pandas or matplotlib: everything that reads a study can import it cheaply.

- `store`: open, check and write the storage (`storage_of`, `open_study`, `load_results`, `Recorder`, `driver_lock`)
- `trials`: the trial vocabulary (`stored_arch`, `state_of`, `metric_value`, `front`, `trial_row`, `trial_seed`)
- `repeats`: seed repeats, seed noise, dominance beyond noise (`stored`, `spread_of`, `seed_noise`, `compare`)
- `standing`: where each named point stands, as data (`named_standing`)
- `fidelity`, `rank`: proxy-fidelity records and their statistics (tau over all pairs and within the latency band)
- `final`: the final stage's runs and the paper table; `training`: the did-not-train and convergence marks
- `latency`: the end-of-search latency re-measure and its intervals
"""
