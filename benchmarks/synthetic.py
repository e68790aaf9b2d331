"""Clustered synthetic feature vectors, for scale tests and benchmarks (10k to 1M tracks).

Real FMA-style features are strongly correlated summaries of a few underlying audio properties, and
tracks come in groups (genre > album > recording > 30 s clip). The generator mimics that: points are
drawn hierarchically in a small latent space whose axes have decaying variance, mapped linearly into
the real feature dimension (519 = 518 FMA statistics + tempo), with a little isotropic noise and a
wildly different scale and offset per feature (as raw librosa statistics have), so the model's scaler
and PCA have real work to do. Figures measured on these vectors are labelled as synthetic wherever
they are reported; the grouping makes them easier than real audio, which is what the demo corpus is for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FEATURE_DIM = 519  # len(feature_extraction.features.feature_names()): 518 FMA statistics + tempo
GENRES = ("Blues", "Classical", "Country", "Easy Listening", "Electronic", "Experimental", "Folk",
          "Hip-Hop", "Instrumental", "International", "Jazz", "Old-Time / Historic", "Pop", "Rock",
          "Soul-RnB", "Spoken")  # the 16 FMA top-level genres


@dataclass
class SyntheticTracks:
    """Raw synthetic features of `n` tracks with their genre, album, artist and recording (rows aligned)."""

    features: np.ndarray    # (n, dim) float64, raw (unscaled) feature values
    genre: np.ndarray       # (n,) genre index into GENRES
    album: np.ndarray       # (n,) album index
    artist: np.ndarray      # (n,) artist index
    recording: np.ndarray   # (n,) recording index (clips of one recording)

    def __len__(self) -> int:
        return len(self.features)


def clustered(n: int, dim: int = FEATURE_DIM, n_genres: int = len(GENRES), latent_dim: int = 32,
              clips_per_recording: int = 4, recordings_per_album: int = 10, seed: int = 0,
              spread: tuple[float, float, float, float] = (1.0, 0.6, 0.4, 0.25),
              noise: float = 0.05) -> SyntheticTracks:
    """`n` clustered feature vectors of dimension `dim`.

    `spread` is the standard deviation of (genre centre, album offset, recording offset, clip offset)
    in the latent space, `noise` the isotropic noise added in feature space (relative to the typical
    signal per feature). Latent axis j has its spread scaled by (1 + j)^-0.5, so a few directions carry
    most of the variance, as in real audio features.
    """
    if n < 1 or dim < 1 or latent_dim < 1:
        raise ValueError("n, dim and latent_dim must be positive")
    rng = np.random.default_rng(seed)
    axis = (1.0 + np.arange(latent_dim)) ** -0.5
    per_album = clips_per_recording * recordings_per_album
    n_albums = max(1, -(-n // per_album))
    n_recordings = -(-n // clips_per_recording)

    genre_c = rng.normal(size=(n_genres, latent_dim)) * axis * spread[0]
    album_genre = rng.integers(0, n_genres, size=n_albums)
    album_c = genre_c[album_genre] + rng.normal(size=(n_albums, latent_dim)) * axis * spread[1]
    rec_album = np.repeat(np.arange(n_albums), recordings_per_album)[:n_recordings]
    rec_c = album_c[rec_album] + rng.normal(size=(n_recordings, latent_dim)) * axis * spread[2]
    recording = np.repeat(np.arange(n_recordings), clips_per_recording)[:n]
    latent = rec_c[recording] + rng.normal(size=(n, latent_dim)) * axis * spread[3]

    mix = rng.normal(size=(latent_dim, dim)) / np.sqrt(latent_dim)
    x = latent @ mix
    x += rng.normal(size=x.shape) * noise * x.std(axis=0)
    scale = 10.0 ** rng.uniform(-2, 3, size=dim)
    offset = rng.normal(size=dim) * scale * 3
    album = rec_album[recording]
    artist = album // 2  # two albums per artist
    return SyntheticTracks(features=x * scale + offset, genre=album_genre[album], album=album, artist=artist,
                           recording=recording)


def track_documents(tracks: SyntheticTracks, feature_version: str, first_id: int = 1) -> list[dict]:
    """The tracks as `tracks` documents (common/contracts.py), for tests that need a stored catalogue."""
    docs = []
    for i in range(len(tracks)):
        g = GENRES[int(tracks.genre[i])]
        docs.append({
            "_id": first_id + i, "title": f"Synthetic {first_id + i}", "artist": f"Artist {tracks.artist[i]}",
            "album": f"Album {tracks.album[i]}", "album_type": "Album", "genre_top": g, "genre_ids": [],
            "genres": [g], "tags": ["synthetic"], "listens": int(1000 // (1 + i % 97)),
            "date_created": None, "duration": 30.0, "license": "synthetic",
            "recording": f"rec-{tracks.recording[i]}", "path": f"{(first_id + i) // 1000:03d}/{first_id + i:06d}.mp3",
            "features": [float(v) for v in tracks.features[i]], "feature_version": feature_version,
        })
    return docs
