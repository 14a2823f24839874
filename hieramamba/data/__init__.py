"""Datasets in their released formats -> one internal representation (records), seconds <-> grid,
video-centric sampling, validation and data reports. Imports no model code.

Entry points for the engine:

- `GroundingDataset.from_config(spec, data_root=None, overrides=None)` (`hieramamba.data.dataset`):
  `load_video_features(video_id) -> (T, C)`, `load_text_features(query) -> (t, C)`,
  `targets(video_id, query_indices) -> (n, 2)` grid units, `to_seconds(video_id, g, vid_stride)`,
  `train_samples(rng, max_vid_len, max_num_text, crop_ratio)`, `eval_samples(split)`,
  `load_sample(sample, train=..., rng=..., ...) -> VideoSample`.
- `hieramamba.data.grid`: `FeatureGrid`, `seconds_to_grid`, `grid_to_seconds`.
- `hieramamba.data.sampling`: `group_queries`, `train_samples`, `eval_samples`, `random_crop`.
"""
