"""Experiment tools over trained models (docs/design.md §5). Import the modules you need:

- `grid`: multi-seed grids of training runs with mean +- std tables (and mPC / rPC).
- `weather`, `weather_sets`, `weather_montage`: fog / rain / snow / night / frost / brightness
  corruptions at severities 1-5, corrupted copies of datasets, and an example picture.
- `class_subset`: a COCO file restricted to some classes, category ids kept.
- `complexity`: params, FLOPs, latency and images/s of every trainer mode.
- `visualize`: detections and gate maps of a checkpoint, as PNG.

This package imports nothing itself, so importing one tool never pulls in the others.
"""
