"""Experiment tools over trained models (docs/design.md §5). Import the modules you need:

- `grid`: multi-seed grids of training runs with mean +- std tables.
- `weather`, `weather_sets`, `weather_montage`: fog / rain / snow / night corruptions, corrupted
  copies of datasets, and an example picture.
- `complexity`: params, FLOPs, latency and images/s of every trainer mode.
- `visualize`: detections and gate maps of a checkpoint, as PNG.

This package imports nothing itself, so importing one tool never pulls in the others.
"""
