"""The real pipeline, run once per test session into a database of its own, for the tests that read
what the pipeline writes (the dashboard's AppTest and browser tests).

    demo corpus (real game-soundtrack clips, FMA layout)
      -> feature_extraction.job (Spark)          -> tracks
      -> jobs.fit_model, twice                   -> models (two versions, the newest current), neighbours
      -> simulator -> Kafka -> jobs.recommend_stream (Structured Streaming, until idle)
                                                 -> recommendations, activity, stream_batches, dead letters

`Pipeline.stream(...)` runs the streaming query again from the same checkpoint, so a test can send a
user's next events and watch what the job writes.

Only this in-process query writes the pipeline's checkpoint. Restarting it in-process after a
`spark-submit` run of the job had been stopped (SIGTERM) on the same checkpoint failed in Spark 4.1.1's
progress reporting (NullPointerException in ProgressContext.extractSourceProgress, "Option.get() is
null"), although the restarted spark-submit job recovers (tests/test_stream_e2e.py); the browser test
therefore runs its job on a checkpoint of its own."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from conf import Settings

PACKAGES = ("hedgewars-data", "supertux-data")  # the ones the corpus tests download anyway
MAX_RECORDINGS = 14
MAX_CLIPS = 2
USERS = 12
EVENTS = 720
BAD_RATE = 0.02


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Pipeline:
    settings: Settings
    spark: object
    summary: dict           # what each stage reported
    users: list[str]        # the simulated users, most active first

    def db(self):
        """The pipeline's database, datetimes read as aware UTC."""
        from datetime import timezone

        from bson.codec_options import CodecOptions

        from common.store import client

        return client(self.settings, 10_000).get_database(
            self.settings.mongo_db, codec_options=CodecOptions(tz_aware=True, tzinfo=timezone.utc))

    def documents(self, *collections: str) -> dict[str, list[dict]]:
        """{collection: every document} as the store holds them now."""
        db = self.db()
        names = collections or tuple(getattr(self.settings, n) for n in type(self.settings).model_fields
                                     if n.startswith("coll_"))
        return {c: list(db[c].find()) for c in names}

    def produce(self, records) -> int:
        from simulator.produce import produce_records

        stats = produce_records(self.settings, records)
        assert stats.sent == len(records), stats
        return stats.sent

    def stream(self, idle_s: float = 2.0, timeout_s: float = 240.0) -> None:
        """The streaming job over whatever the topic holds beyond its checkpoint, until caught up."""
        from jobs import recommend_stream as rs

        query = rs.run(self.spark, self.settings)
        try:
            how = rs.wait(query, self.settings, timeout=timeout_s, until_idle=idle_s)
            assert how == "idle", f"the streaming job did not catch up: {how}"
        finally:
            query.stop()


def build(spark, base: Settings, workdir: Path) -> Pipeline:
    from feature_extraction import corpus
    from feature_extraction import job as extraction
    from jobs.fit_model import run as fit
    from simulator.behaviour import Simulator, load_catalogue
    from stack.services import ensure_topics

    run = base.topic_activity.rsplit("-", 1)[-1]
    s = base.model_copy(update={
        "mongo_db": f"{base.mongo_db}_pipeline", "topic_activity": f"{base.topic_activity}-pipeline",
        "topic_dead_letters": f"{base.topic_dead_letters}-pipeline", "audio_dir": workdir / "fma_small",
        "metadata_dir": workdir / "fma_metadata", "models_dir": workdir / "models",
        "checkpoint_dir": workdir / "checkpoints", "trigger_seconds": 0.2,
        "max_offsets_per_trigger": 120})   # several micro-batches, as a live stream writes them
    summary: dict = {}
    summary["corpus"] = corpus.build(s, packages=PACKAGES, max_recordings=MAX_RECORDINGS, max_clips=MAX_CLIPS,
                                     progress=False)
    summary["extraction"] = extraction.run(spark, s, progress=False)
    summary["models"] = [fit(spark, s, progress=False, tune=False), fit(spark, s, progress=False)]
    ensure_topics(s)
    sim = Simulator(load_catalogue(s), USERS, seed=11, concurrent=USERS, bad_rate=BAD_RATE,
                    run_id=run)
    p = Pipeline(s, spark, summary, [])
    p.produce(sim.records(EVENTS, now_ms() - EVENTS * 50, 50))   # the last minute of a session, 20 events/s
    p.stream()
    recs = p.documents(s.coll_recommendations, s.coll_activity)
    active = {d["_id"] for d in recs[s.coll_recommendations]}
    counts = {u: sum(e["user_id"] == u for e in recs[s.coll_activity]) for u in active}
    p.users = sorted(active, key=lambda u: (-counts[u], u))
    return p


ENV_FIELDS = ("mongo_uri", "mongo_db", "kafka_bootstrap", "topic_activity", "topic_dead_letters", "checkpoint_dir",
              "models_dir", "audio_dir", "metadata_dir", "trigger_seconds", "max_offsets_per_trigger",
              "stream_partitions", "starting_offsets", "dashboard_cache_dir", "dashboard_ttl_s", "dashboard_port")


def env_for(settings: Settings) -> dict[str, str]:
    """The environment of a subprocess (spark-submit job, simulator, dashboard) pointed at `settings`:
    this one's variables without any MUSICREC_ ones, then every setting the pipeline changes."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICREC_")}
    names = ENV_FIELDS + tuple(n for n in type(settings).model_fields if n.startswith("coll_"))
    env.update({f"MUSICREC_{n.upper()}": str(getattr(settings, n)) for n in names})
    env["MUSICREC_SPARK_MASTER"] = "local[2]"
    env["PYTHONPATH"] = str(settings.root)
    return env
