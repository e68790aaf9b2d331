"""The documents the parts of musicrec exchange through MongoDB and Kafka: one place for their shapes.

tracks (one per FMA track, `_id` = track_id; written by feature_extraction, read by everyone):
    _id: int, title, artist, album, album_type, genre_top: str|None, genre_ids: list[int],
    genres: list[str] (titles), tags: list[str], listens: int, date_created: str|None (ISO),
    duration: float|None, license: str|None, recording: str|None (the source recording a clip was
    cut from: demo corpus only), path: str (audio path relative to the audio root),
    features: list[float] (fixed, named order: feature_extraction.features.feature_names()),
    feature_version: str, extracted_at: datetime
extraction_errors (`_id` = path): path, track_id, reason, signal (crashed only), feature_version, at
models (`_id` = version; plus one pointer doc `_id` = "current" with `version`):
    version, created_at, path, feature_version, catalogue_size, params: {...}, metrics: {...},
    tuning: {...}
neighbours (`_id` = track_id): neighbours: [{track_id, distance}], model_version
recommendations (`_id` = user_id): user_id, items: the list [{track_id, score, reason (common.catalogue:
    similar, taste, popular_genre, popular), reason_track_id (similar), genre (popular_genre)}] stored by
    field, {track_id: [...], score: [...], ...} (common.reclist: pack, items_of), model_version,
    event_time_max, updated_at, batch_id, offsets, n_events, candidates; readers resolve titles from the
    catalogue (common.catalogue.Catalogue, reason_text).
activity (`_id` = event_id): the validated events, newest first for the dashboard feed
dead_letters (`_id` = topic-partition-offset): raw, reason, at, topic, partition, offset
stream_batches (`_id` = batch_id): rows, duration_ms, latency_ms_p50/p95/p99, written_at

Kafka `activity` value (JSON, key = user_id): event_id, user_id, track_id, action (play, complete,
skip, like, dislike), event_time (ISO-8601 UTC or epoch ms), ms_played, session_id.
"""
from __future__ import annotations

from pyspark.sql import types as T

ACTIONS = ("play", "complete", "skip", "like", "dislike")

TRACK_SCHEMA = T.StructType([
    T.StructField("_id", T.LongType(), False),
    T.StructField("title", T.StringType()),
    T.StructField("artist", T.StringType()),
    T.StructField("album", T.StringType()),
    T.StructField("album_type", T.StringType()),
    T.StructField("genre_top", T.StringType()),
    T.StructField("genre_ids", T.ArrayType(T.LongType())),
    T.StructField("genres", T.ArrayType(T.StringType())),
    T.StructField("tags", T.ArrayType(T.StringType())),
    T.StructField("listens", T.LongType()),
    T.StructField("date_created", T.StringType()),
    T.StructField("duration", T.DoubleType()),
    T.StructField("license", T.StringType()),
    T.StructField("recording", T.StringType()),
    T.StructField("path", T.StringType()),
    T.StructField("features", T.ArrayType(T.DoubleType())),
    T.StructField("feature_version", T.StringType()),
    T.StructField("extracted_at", T.TimestampType()),
])
