"""The planted structure of the synthetic benchmark, independent of any file format.

A *world* (one per dataset and seed) fixes K event types, each with a unit signature vector in
video-feature space, a noun that names it and a verb, plus a few background signatures that no
query names, and a per-word embedding table for the text side.

A *video* is a time line of event segments separated by background segments. Per video there are
`long_range_structures` structures: an event type X that occurs exactly twice, `far_gap_s` seconds
apart (beyond the reach of a local mixer, within one training window), with other events between
and around the two occurrences as anywhere else. "X for the first time" names the earlier
occurrence, "X again" the later one. The two are locally identical (both cut to `x_max_s`, both
among unrelated events), so which one a query means shows only in whether the twin lies before or
after it, far away: a model that compares an event with what it saw far on either side reads it
off, a local one is near chance (one in two) unless it knows absolute position (R@1 compares
the two occurrences, so "later scores higher" answers "again"; the synthetic default scale has no
absolute position embedding for that reason). Generator 3.0 kept only background between the two
X's, so "background on my right" meant "first": a local model read the answer off its neighbours
(docs/synthetic.md). Absolute position says little: a pair spans at most `max_pair_span_frac` of
its video. The remaining events have types that occur once in the video; they are the targets of
plain queries.

Features: feature i covers the window [i*step, i*step + size) seconds of the released format; its
value is the overlap-weighted mix of the covered segments' signatures plus each segment's slow
linear drift, a per-video constant offset ("style") and i.i.d. noise.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field

import numpy as np

from hieramamba.data.synth.spec import LengthDist, SynthSpec, window_seconds

LIKE_IDS = {"ego4d_nlq": 1, "mad": 2, "tacos": 3}
TACOS_FPS = 29.4

# (base form, past form): single words so that every token is one GloVe-style word.
VERBS: tuple[tuple[str, str], ...] = (
    ("cut", "cut"), ("wash", "washed"), ("open", "opened"), ("close", "closed"), ("take", "took"),
    ("put", "put"), ("hold", "held"), ("move", "moved"), ("peel", "peeled"), ("clean", "cleaned"),
    ("carry", "carried"), ("drop", "dropped"), ("fold", "folded"), ("stir", "stirred"),
    ("pour", "poured"), ("check", "checked"), ("lift", "lifted"), ("push", "pushed"),
    ("pull", "pulled"), ("shake", "shook"),
)
NOUNS: tuple[str, ...] = (
    "onion", "knife", "plate", "bowl", "cup", "door", "drawer", "box", "bottle", "towel", "bag",
    "book", "phone", "key", "lamp", "chair", "spoon", "pan", "lid", "jar", "bread", "apple",
    "carrot", "cucumber", "kiwi", "lemon", "orange", "pepper", "potato", "tomato", "board", "sink",
    "fridge", "oven", "kettle", "glass", "fork", "basket", "window", "shirt", "shoe", "paper", "pen",
    "bucket", "hammer", "ladder", "rope", "clock",
)
SUBJECTS = {
    "tacos": ("the person", "she", "he", "someone"),
    "mad": ("he", "she", "the man", "the woman", "someone"),
    "ego4d_nlq": ("i",),
}
# long-range queries: which occurrence of the twice-occurring X, and the words that say so
WHICH = {"first": "for the first time", "again": "again"}
PLAIN, LONG_RANGE = "plain", "long_range"

_TOKEN = re.compile(r"\w+")


def tokenize(sentence: str) -> list[str]:
    """Lower-case `\\w+` tokens (HieraMamba's GloVe tokenizer); token features follow this split."""
    return _TOKEN.findall(sentence.lower())


@dataclass(frozen=True)
class EventType:
    index: int
    noun: str
    verb_base: str
    verb_past: str


@dataclass
class Segment:
    start: float  # seconds (already in the format's units: TACoS frame / 29.4, else ms)
    end: float
    is_event: bool
    type: int  # event type index, or background type index


@dataclass
class PlantedQuery:
    kind: str  # "plain" | "long_range"
    target: int  # index into PlantedVideo.events
    x_type: int
    sentence: str
    paraphrase: int = 0
    which: str | None = None  # long_range: "first" | "again"
    other_event: int | None = None  # long_range: the other occurrence of X (index into events)
    distance: float | None = None  # long_range: seconds from the first occurrence's end to the second's start
    extra: dict = field(default_factory=dict)  # format-specific text fields (Ego4D template, slots)


@dataclass
class PlantedVideo:
    duration: float  # seconds
    segments: list[Segment]  # the full time line (events and background), ordered, covering [0, D]
    queries: list[PlantedQuery]
    num_frames: int | None = None  # TACoS: frames at 29.4 fps

    @property
    def events(self) -> list[Segment]:
        return [s for s in self.segments if s.is_event]


class World:
    """Signatures, vocabulary and word vectors of one synthetic dataset (fixed by like and seed)."""

    def __init__(self, spec: SynthSpec, seed: int):
        self.spec = spec
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, LIKE_IDS[spec.like], 0])
        k, b, c = spec.num_types, spec.num_background, spec.video_dim
        if k > len(NOUNS):
            raise ValueError(f"num_types {k} exceeds the {len(NOUNS)} nouns available")
        noun_vecs = _unit_rows(rng.standard_normal((k, c)))  # (K, C)
        verb_vecs = _unit_rows(rng.standard_normal((len(VERBS), c)))  # (V, C)
        self.background = _unit_rows(rng.standard_normal((b, c)))  # (B, C)
        nouns = [NOUNS[i] for i in rng.permutation(len(NOUNS))[:k]]
        verbs = rng.integers(0, len(VERBS), size=k)
        # types sharing a verb share part of their signature: the noun must be read to tell them apart
        a = spec.verb_share
        self.signatures = _unit_rows(a * verb_vecs[verbs] + math.sqrt(1.0 - a * a) * noun_vecs)  # (K, C)
        self.types = [EventType(i, nouns[i], *VERBS[int(verbs[i])]) for i in range(k)]
        self._words: dict[str, np.ndarray] = {}

    def word_vector(self, word: str) -> np.ndarray:
        """Fixed unit vector of a word (text_dim,), float64; the same in every query."""
        vec = self._words.get(word)
        if vec is None:
            rng = np.random.default_rng([self.seed, LIKE_IDS[self.spec.like], 7, zlib.crc32(word.encode())])
            vec = _unit_rows(rng.standard_normal((1, self.spec.text_dim)))[0]
            self._words[word] = vec
        return vec

    def token_features(self, sentence: str, rng: np.random.Generator, noise: float | None = None) -> np.ndarray:
        """(t, text_dim) float32: the word vectors of the sentence's tokens plus small noise."""
        noise = self.spec.token_noise if noise is None else noise
        toks = tokenize(sentence)
        rows = np.stack([self.word_vector(w) for w in toks])
        if noise > 0:
            rows = rows + rng.standard_normal(rows.shape) * (noise / math.sqrt(rows.shape[1]))
        return np.ascontiguousarray(rows, dtype=np.float32)


def _unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def sample_length(dist: LengthDist, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
    n = 1 if size is None else size
    fixed = rng.random(n) < dist.p_fixed
    x = np.exp(math.log(dist.median) + dist.sigma * rng.standard_normal(n))
    x = np.where(fixed, dist.hi, np.clip(x, dist.lo, dist.hi))
    return x if size is not None else x[:1]


# ----------------------------------------------------------------------------------- time line


def quantizer(like: str):
    """Seconds -> the format's resolution: TACoS whole frames at 29.4 fps, others milliseconds."""
    if like == "tacos":
        return lambda t: round(t * TACOS_FPS) / TACOS_FPS
    return lambda t: round(t, 3)


def sample_duration(spec: SynthSpec, rng: np.random.Generator) -> tuple[float, int | None]:
    d = float(sample_length(spec.duration, rng)[0])
    if spec.like == "tacos":
        nf = int(round(d * TACOS_FPS))
        return nf / TACOS_FPS, nf
    if spec.like == "mad":
        return round(d, 1), None  # MAD movie_duration has one decimal (e.g. 7947.6)
    return round(d, 3), None


def plan_video(spec: SynthSpec, world: World, rng: np.random.Generator, max_tries: int = 150) -> PlantedVideo:
    """Lay out one video's events and background and plant its queries (see module doc)."""
    duration, num_frames = sample_duration(spec, rng)
    q = quantizer(spec.like)
    # A short video may not hold every structure at the planted gap: it gets fewer (down to none).
    for n_struct in range(spec.long_range_structures, -1, -1):
        n_events = 2 * n_struct + spec.unique_events
        placed = _place(spec, duration, n_events, n_struct, rng, q, max_tries if n_struct else 1 + max_tries // 10)
        if placed is not None:
            starts, ends, pairs = placed
            break
    else:
        raise RuntimeError(f"could not lay out {spec.unique_events} events in a {duration:.0f} s video")

    # Types: X_i for each structure, then one distinct type per unique event.
    perm = [int(t) for t in rng.permutation(spec.num_types)]
    event_type = [-1] * n_events
    for i, pair in enumerate(pairs):
        for e in pair:
            event_type[e] = perm[i]
    uniq = [e for e in range(n_events) if event_type[e] < 0]
    for j, e in enumerate(uniq):
        event_type[e] = perm[n_struct + j]

    segments = _with_background(starts, ends, event_type, duration, spec.num_background, rng)
    queries: list[PlantedQuery] = []
    subjects = SUBJECTS[spec.like]
    chosen = sorted(int(e) for e in rng.choice(uniq, size=min(spec.plain_queried, len(uniq)), replace=False))
    for e in chosen:
        subj = _pick_subjects(subjects, spec.paraphrases, rng)
        for p, s in enumerate(subj):
            x = world.types[event_type[e]]
            text, extra = sentence(spec.like, s, x)
            queries.append(PlantedQuery(PLAIN, e, x.index, text, paraphrase=p, extra=extra))
    for first, again in pairs:
        dist = round(float(starts[again] - ends[first]), 3)
        for which, tgt, other in (("first", first, again), ("again", again, first)):
            subj = _pick_subjects(subjects, spec.paraphrases, rng)
            for p, s in enumerate(subj):
                x = world.types[event_type[tgt]]
                text, extra = sentence(spec.like, s, x, which)
                queries.append(PlantedQuery(LONG_RANGE, tgt, x.index, text, paraphrase=p, which=which,
                                            other_event=other, distance=dist, extra=extra))
    return PlantedVideo(duration=duration, segments=segments, queries=queries, num_frames=num_frames)


def _place(spec, duration, n_events, n_struct, rng, q, tries):
    """The first of `tries` random layouts that fits (see `_layout`), or None."""
    for _ in range(tries):
        placed = _layout(spec, duration, n_events, n_struct, rng, q)
        if placed is not None:
            return placed
    return None


def _pick_subjects(subjects: tuple[str, ...], n: int, rng: np.random.Generator) -> list[str]:
    if n <= len(subjects):
        return [subjects[int(i)] for i in rng.choice(len(subjects), size=n, replace=False)]
    return [subjects[int(i)] for i in rng.integers(0, len(subjects), size=n)]


def _layout(spec: SynthSpec, duration: float, n: int, n_struct: int, rng: np.random.Generator, q):
    """(starts, ends, pairs) of n time-ordered events, or None if this draw does not fit.

    The n events are laid out in time order with >= min_gap of background between them (Dirichlet
    gaps). Then `n_struct` disjoint pairs are drawn among the pairs whose gap, once both events are
    cut to `x_max_s`, lies in `far_gap_s` and whose span is at most `max_pair_span_frac` of the
    video; each pair becomes one structure (the same type X twice) and is cut to `x_max_s`. Other
    events lie between and around the two X's as anywhere else, so nothing near an X says whether
    its twin is before or after it. pairs[i] = (first X, second X), event indices in time order.
    """
    lengths = sample_length(spec.moment, rng, size=n)
    lengths = np.minimum(lengths, spec.max_moment_frac * duration)
    budget = spec.max_fill * duration
    if lengths.sum() > budget:
        lengths = lengths * (budget / lengths.sum())
    free = duration - lengths.sum() - (n + 1) * spec.min_gap
    if free <= 0:
        return None
    gaps = spec.min_gap + free * rng.dirichlet(np.ones(n + 1))  # (n + 1,) before each event and at the end
    starts = np.cumsum(gaps[:n] + np.concatenate(([0.0], lengths[:-1])))  # (n,)
    ends = starts + lengths
    cut_ends = starts + np.minimum(lengths, spec.x_max_s)  # an X is cut to x_max_s, keeping its start
    lo, hi = spec.far_gap_s
    max_span = spec.max_pair_span_frac * duration
    candidates = [(a, b) for a in range(n) for b in range(a + 1, n)
                  if lo <= starts[b] - cut_ends[a] <= hi and cut_ends[b] - starts[a] <= max_span]
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for k in rng.permutation(len(candidates)):
        a, b = candidates[int(k)]
        if a not in used and b not in used:
            pairs.append((a, b))
            used.update((a, b))
            if len(pairs) == n_struct:
                break
    if len(pairs) < n_struct:
        return None
    for a, b in pairs:
        ends[a], ends[b] = cut_ends[a], cut_ends[b]
    starts = [q(float(t)) for t in starts]
    ends = [q(float(t)) for t in ends]
    if any(e <= s for s, e in zip(starts, ends)) or any(b <= a for a, b in zip(ends, starts[1:])) or ends[-1] >= duration:
        return None
    return starts, ends, pairs


def _with_background(starts, ends, event_type, duration, n_background, rng) -> list[Segment]:
    segs: list[Segment] = []
    t = 0.0
    for s, e, ty in zip(starts, ends, event_type):
        if s > t:
            segs.append(Segment(t, s, False, int(rng.integers(n_background))))
        segs.append(Segment(s, e, True, int(ty)))
        t = e
    if duration > t:
        segs.append(Segment(t, duration, False, int(rng.integers(n_background))))
    return segs


# ----------------------------------------------------------------------------------- text


def sentence(like: str, subj: str, x: EventType, which: str | None = None) -> tuple[str, dict]:
    """The query text (and Ego4D's template / slot fields) naming event X; `which` ("first" |
    "again") adds which of its two occurrences is meant."""
    tail = f" {WHICH[which]}" if which else ""
    if like == "ego4d_nlq":
        query = f"when did i {x.verb_base} the {x.noun}{tail}?"
        template = "Objects: When did I Y the X?"
        extra = {"template": template, "slot_x": x.noun, "verb_x": x.verb_base,
                 "raw_tags": [template, query, x.noun, x.verb_base]}
        return query, extra
    main = f"{subj} {x.verb_past} the {x.noun}{tail}"
    if like == "mad":  # audio-description style: capitalised sentence with a full stop
        return main[0].upper() + main[1:] + ".", {}
    return main[0].upper() + main[1:], {}  # TACoS: "She took out kiwi" style, no full stop


# ----------------------------------------------------------------------------------- features


def num_features(like: str, duration: float, num_frames: int | None = None) -> int:
    if like == "ego4d_nlq":  # official per-clip cut: rows int(s*1.875) .. int(e*1.875) inclusive
        return int(duration * 1.875) + 1
    if like == "mad":  # 5 fps frames, floor(duration * 5)
        return max(1, int(math.floor(duration * 5.0 + 1e-9)))
    # TACoS: C3D 16-frame clips every 4 frames, every 4th kept -> one per 16 frames
    assert num_frames is not None
    return max(1, num_frames // 16)


def render_features(spec: SynthSpec, world: World, video: PlantedVideo, rng: np.random.Generator) -> np.ndarray:
    """(T, video_dim) float32 features of one video (see module doc)."""
    step, size = window_seconds(spec.like)
    t_len = num_features(spec.like, video.duration, video.num_frames)
    c = spec.video_dim
    a = np.arange(t_len, dtype=np.float64) * step  # (T,) window starts, seconds
    b = np.minimum(a + size, video.duration)
    a = np.minimum(a, np.nextafter(video.duration, 0.0))
    b = np.maximum(b, np.minimum(a + size, video.duration))
    s = np.array([g.start for g in video.segments])  # (S,)
    e = np.array([g.end for g in video.segments])
    w = np.clip(np.minimum(b[:, None], e[None]) - np.maximum(a[:, None], s[None]), 0.0, None)  # (T, S)
    empty = w.sum(1) <= 0  # degenerate windows at the very end: take the last segment
    w[empty, -1] = 1.0
    w = w / w.sum(1, keepdims=True)
    centre = 0.5 * (a + b)
    u = np.clip((centre[:, None] - s[None]) / (e - s)[None], 0.0, 1.0)  # (T, S) position in segment

    sig = np.stack([world.signatures[g.type] if g.is_event else world.background[g.type] for g in video.segments])
    d0 = _unit_rows(rng.standard_normal((len(video.segments), c))) * spec.drift  # (S, C)
    d1 = _unit_rows(rng.standard_normal((len(video.segments), c))) * spec.drift
    style = _unit_rows(rng.standard_normal((1, c))) * spec.style  # (1, C)
    noise = rng.standard_normal((t_len, c)) * (spec.noise / math.sqrt(c))
    feats = w @ (sig + d0) + (w * u) @ (d1 - d0) + style + noise  # (T, C)
    return np.ascontiguousarray(feats, dtype=np.float32)
