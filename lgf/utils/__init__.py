"""Support code shared by the model library, training, evaluation and the experiment tools.

- `atomic_write`: every file the package writes goes through a temp file + fsync + rename.
- `setting_errors`: errors that name a bad setting so a command line can show it as its flag.
- `state_dicts`: load_state_dict with a message naming the tensors that do not fit.
- `unwrap`: the module inside DistributedDataParallel / DataParallel / torch.compile wrappers.
"""
