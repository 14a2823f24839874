"""What each synthetic dataset looks like at each scale: counts, lengths, dims, planted structure.

One `SynthSpec` per (like, scale). The numbers follow the real datasets' statistics
(datasets.md §1-§3, reference §1.9), scaled down so that `default` trains in a few CPU minutes and
`smoke` generates in well under a second. docs/synthetic.md tabulates them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

LIKES = ("ego4d_nlq", "mad", "tacos")
SCALES = ("smoke", "default")


@dataclass(frozen=True)
class LengthDist:
    """A log-normal length in seconds (median, sigma of log), clipped to [lo, hi].

    `p_fixed` > 0: with that probability the length is exactly `hi` (Ego4D: most clips are 480 s).
    """

    median: float
    sigma: float
    lo: float
    hi: float
    p_fixed: float = 0.0


@dataclass(frozen=True)
class SynthSpec:
    like: str
    scale: str
    splits: dict[str, int]  # split -> number of videos (Ego4D: clips)
    duration: LengthDist  # video (clip, movie) length, seconds
    moment: LengthDist  # planted event length, seconds
    max_moment_frac: float  # an event never exceeds this fraction of its video
    max_fill: float  # events cover at most this fraction of a video (rest is background)
    min_gap: float  # seconds of background at least between two events (and at both ends)
    num_types: int  # K event types (each has a signature and a noun naming it)
    num_background: int  # background types (signatures no query names)
    long_range_structures: int  # per video: an event type occurring twice, far apart (world.py)
    unique_events: int  # per video: events of a type occurring once (plain targets + unqueried)
    plain_queried: int  # per video: how many unique-type events get plain queries
    paraphrases: int  # sentences per queried target (TACoS: several annotators per video)
    far_gap_s: tuple[float, float]  # long-range: seconds between the two X's (end to start, inclusive)
    x_max_s: float  # long-range: X events last at most this long
    max_pair_span_frac: float  # long-range: a pair (first X start to second X end) spans <= this of its video
    video_dim: int
    text_dim: int
    noise: float  # norm of the i.i.d. per-feature noise (signatures have norm 1)
    drift: float  # norm of the slow linear drift inside each segment
    style: float  # norm of the per-video constant offset
    token_noise: float  # norm of the per-token noise on word vectors (Ego4D / MAD token features)
    verb_share: float  # signature = verb_share * verb vector + sqrt(1 - verb_share^2) * noun vector
    clips_per_video: tuple[int, int] = (1, 1)  # Ego4D: clips sharing one video_uid

    def as_dict(self) -> dict:
        return asdict(self)


# Feature windows per released format, in seconds: feature i covers [i*step, i*step + size).
# Ego4D EgoVLP (SnAG): 32 frames, effective stride 16 frames @ 30 fps -> 1.875 feat/s.
# MAD CLIP: one frame per 0.2 s. TACoS C3D: 16 frames, effective stride 16 frames @ 29.4 fps.
FEATURE_WINDOWS: dict[str, dict[str, float]] = {
    "ego4d_nlq": {"fps": 30.0, "stride_frames": 16.0, "size_frames": 32.0},
    "mad": {"fps": 5.0, "stride_frames": 1.0, "size_frames": 1.0},
    "tacos": {"fps": 29.4, "stride_frames": 16.0, "size_frames": 16.0},
}

# Default scale: ~100-150 distinct long-range training targets per dataset; a learned probe needed
# about that many to generalise the long-range rule (docs/synthetic.md, "A learned probe").
_COMMON = dict(noise=2.0, drift=0.5, style=0.3, token_noise=0.1, verb_share=0.5, num_background=4)

SPECS: dict[tuple[str, str], SynthSpec] = {
    # Ego4D-NLQ: ~8 min clips, short moments (median ~7 s), 14 queries per clip, sparse events.
    ("ego4d_nlq", "default"): SynthSpec(
        like="ego4d_nlq", scale="default", splits={"train": 48, "val": 150, "test": 8},
        duration=LengthDist(median=300.0, sigma=0.45, lo=90.0, hi=480.0, p_fixed=0.3),
        moment=LengthDist(median=7.0, sigma=0.7, lo=2.0, hi=40.0), max_moment_frac=0.1,
        max_fill=0.5, min_gap=2.0, num_types=24, long_range_structures=2,
        unique_events=12, plain_queried=10, paraphrases=1, far_gap_s=(25.0, 60.0), x_max_s=10.0,
        max_pair_span_frac=0.5, video_dim=64, text_dim=64,
        clips_per_video=(1, 2), **_COMMON,
    ),
    ("ego4d_nlq", "smoke"): SynthSpec(
        like="ego4d_nlq", scale="smoke", splits={"train": 3, "val": 2, "test": 2},
        duration=LengthDist(median=200.0, sigma=0.2, lo=150.0, hi=240.0, p_fixed=0.8),
        moment=LengthDist(median=6.0, sigma=0.6, lo=2.0, hi=20.0), max_moment_frac=0.1,
        max_fill=0.5, min_gap=2.0, num_types=12, long_range_structures=1,
        unique_events=6, plain_queried=5, paraphrases=1, far_gap_s=(20.0, 60.0), x_max_s=10.0,
        max_pair_span_frac=0.5, video_dim=32, text_dim=32,
        clips_per_video=(1, 2), **_COMMON,
    ),
    # MAD: long movies at 5 fps (scaled from ~110 min to ~5.5 min), ~4 s moments (~1% of a movie).
    ("mad", "default"): SynthSpec(
        like="mad", scale="default", splits={"train": 16, "val": 4, "test": 84},
        duration=LengthDist(median=220.0, sigma=0.5, lo=90.0, hi=600.0),
        moment=LengthDist(median=3.6, sigma=0.45, lo=1.0, hi=15.0), max_moment_frac=0.05,
        max_fill=0.6, min_gap=1.0, num_types=40, long_range_structures=3,
        unique_events=20, plain_queried=20, paraphrases=1, far_gap_s=(20.0, 45.0), x_max_s=6.0,
        max_pair_span_frac=0.5, video_dim=64, text_dim=64,
        **_COMMON,
    ),
    ("mad", "smoke"): SynthSpec(
        like="mad", scale="smoke", splits={"train": 3, "val": 2, "test": 2},
        duration=LengthDist(median=150.0, sigma=0.1, lo=120.0, hi=200.0),
        moment=LengthDist(median=3.6, sigma=0.45, lo=1.0, hi=10.0), max_moment_frac=0.05,
        max_fill=0.45, min_gap=1.0, num_types=24, long_range_structures=2,
        unique_events=10, plain_queried=10, paraphrases=1, far_gap_s=(20.0, 50.0), x_max_s=6.0,
        max_pair_span_frac=0.5, video_dim=32, text_dim=32,
        **_COMMON,
    ),
    # TACoS: ~5 min videos, long moments (median ~12 s, mean ~17 s), several sentences per event.
    ("tacos", "default"): SynthSpec(
        like="tacos", scale="default", splits={"train": 96, "val": 12, "test": 160},
        duration=LengthDist(median=240.0, sigma=0.6, lo=60.0, hi=900.0),
        moment=LengthDist(median=14.0, sigma=0.8, lo=3.0, hi=90.0), max_moment_frac=0.25,
        max_fill=0.7, min_gap=2.0, num_types=16, long_range_structures=2,
        unique_events=5, plain_queried=4, paraphrases=2, far_gap_s=(45.0, 75.0), x_max_s=10.0,
        max_pair_span_frac=0.5, video_dim=64, text_dim=64,
        **_COMMON,
    ),
    ("tacos", "smoke"): SynthSpec(
        like="tacos", scale="smoke", splits={"train": 3, "val": 2, "test": 2},
        duration=LengthDist(median=130.0, sigma=0.2, lo=90.0, hi=180.0),
        moment=LengthDist(median=10.0, sigma=0.7, lo=3.0, hi=40.0), max_moment_frac=0.25,
        max_fill=0.7, min_gap=2.0, num_types=12, long_range_structures=1,
        unique_events=5, plain_queried=5, paraphrases=3, far_gap_s=(20.0, 50.0), x_max_s=10.0,
        max_pair_span_frac=0.5, video_dim=32, text_dim=32,
        **_COMMON,
    ),
}


def get_spec(like: str, scale: str) -> SynthSpec:
    if like not in LIKES:
        raise ValueError(f"--like must be one of {', '.join(LIKES)}; got {like!r}")
    if scale not in SCALES:
        raise ValueError(f"--scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return SPECS[(like, scale)]


def features_per_second(like: str) -> float:
    w = FEATURE_WINDOWS[like]
    return w["fps"] / w["stride_frames"]


def window_seconds(like: str) -> tuple[float, float]:
    """(step, size) of the feature windows in seconds."""
    w = FEATURE_WINDOWS[like]
    return w["stride_frames"] / w["fps"], w["size_frames"] / w["fps"]


__all__ = ["LIKES", "SCALES", "LengthDist", "SynthSpec", "SPECS", "FEATURE_WINDOWS", "get_spec",
           "features_per_second", "window_seconds"]
