"""Training of the RetinaNet variants (docs/design.md §5). Import the modules you need:

- `config`: `TrainConfig`, every setting of a run and its default.
- `trainer`: `Trainer`, one run (data, model, loop, evaluation, checkpoints, logs).
- `data_setup`: the run's datasets and loaders (synthetic set when no data is given).
- `loop`: `train_one_epoch` over a `TrainStep` (model, optimizer, ...) and `TrainState`.
- `optim`, `lr_schedule`, `ema`: optimizer, learning-rate schedule, weight EMA.
- `checkpoint`, `rng`: the checkpoint format (weights_only) and RNG state capture.
- `distributed`: torchrun / DistributedDataParallel helpers.
- `run_log`: log.jsonl, metrics.csv and training_curves.png.

This package imports nothing itself, so importing one module never pulls in the others.
"""
