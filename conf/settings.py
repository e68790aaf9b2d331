"""Every setting of musicrec, read in one place.

Each field can be overridden by an environment variable with the prefix ``MUSICREC_`` (for example
``MUSICREC_MONGO_URI``, ``MUSICREC_KAFKA_BOOTSTRAP``) or by a ``.env`` file in the project root.
Nested names are not used, so every variable is flat and easy to set on a cluster.
Secrets (`SECRETS`: the MongoDB and Kafka passwords) come only from the process environment (a `.env`
file is not read for them) and are never printed: ``summary()`` masks them, spark-submit.sh never puts
them on a command line, and the MongoDB URI may not carry one itself.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path, PurePath
from typing import Annotated, Literal
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import PydanticBaseSettingsSource

import os
from typing import Literal


def _project_root() -> Path:
    """The checkout's root; under spark-submit this module may be imported from the --py-files zip,
    whose path is no directory, so spark-submit.sh exports MUSICREC_ROOT."""
    here = Path(__file__).resolve().parent.parent
    return here if here.is_dir() else Path(os.environ.get("MUSICREC_ROOT", os.getcwd())).resolve()


ROOT = _project_root()

# a local path or a URI (file://, hdfs://, s3a://, ...): kept as text, since pathlib would fold "hdfs://nn/x" into
# "hdfs:/nn/x"; common/storage.py reads and writes it, and gives Spark its URI
StorageUri = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, PurePath) else v)]
SECRETS = ("mongo_password", "kafka_sasl_password")   # read from the environment only, never printed


class _WithoutSecrets(PydanticBaseSettingsSource):
    """A source (the .env file: a file in the checkout) that may set anything but a secret."""

    def __init__(self, inner: PydanticBaseSettingsSource):
        super().__init__(inner.settings_cls)
        self.inner = inner

    def get_field_value(self, field, field_name):
        return None, field_name, False

    def __call__(self):
        return {k: v for k, v in self.inner().items() if k not in SECRETS}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MUSICREC_", env_file=str(ROOT / ".env"), extra="ignore",
                                      hide_input_in_errors=True)   # an error never echoes a value (a secret)

    # --- paths -------------------------------------------------------------------------------------
    root: Path = Field(ROOT, description="project root")
    data_dir: Path = Field(ROOT / "data", description="local service data, corpora, models, checkpoints")
    cache_dir: Path = Field(ROOT / ".cache", description="downloads: jars, Kafka, Go modules, .deb files")
    jars_dir: Path = Field(ROOT / ".cache" / "jars" / "spark", description="connector jars for --jars")
    audio_dir: Path = Field(ROOT / "data" / "corpus" / "fma_demo", description="FMA-style audio folder")
    metadata_dir: Path = Field(ROOT / "data" / "corpus" / "fma_metadata", description="tracks.csv, genres.csv")
    models_dir: StorageUri = Field(str(ROOT / "data" / "models"), description="versioned PipelineModels: a path "
                                   "or a URI (file://, hdfs://, s3a://) that the driver and executors share")
    checkpoint_dir: StorageUri = Field(str(ROOT / "data" / "checkpoints"), description="streaming checkpoints: a "
                                       "path or a URI (file://, hdfs://, s3a://) on storage the cluster shares")
    artefacts_dir: Path = Field(ROOT / ".cache" / "artefacts", description="what `python -m deploy` builds for "
                                "spark-submit on a cluster: code zip, packed environment")
    deploy_python_prefix: str = Field("", description="prefix of the Python 3.11 on the cluster's nodes that the "
                                      "packed environment links to, e.g. /usr (empty: this interpreter's)")

    # --- Spark ---------------------------------------------------------------------------------------
    spark_master: str = Field("local[*]", description="Spark master URL (local[*], spark://, yarn, k8s://)")
    spark_app_prefix: str = Field("musicrec", description="prefix of Spark application names")
    spark_shuffle_partitions: int = Field(4, description="spark.sql.shuffle.partitions")
    spark_bind_address: str = Field("127.0.0.1", description="address a local-master Spark driver, its block "
                                    "manager and UI listen on (empty: Spark's default, every interface)")

    # --- the local standalone cluster (python -m stack.cluster) ------------------------------------------
    cluster_host: str = Field("127.0.0.1", description="address the local standalone master and workers bind")
    cluster_master_port: int = Field(7077, description="local standalone master port (spark://HOST:PORT)")
    cluster_master_ui_port: int = Field(8080, description="local standalone master web UI port")
    cluster_worker_port: int = Field(7078, description="first local worker's port (worker i: this + i)")
    cluster_worker_ui_port: int = Field(8081, description="first local worker's web UI port (worker i: this + i)")
    cluster_workers: int = Field(2, description="workers of the local standalone cluster")
    cluster_worker_cores: int = Field(1, description="cores of each local worker")
    cluster_worker_memory: str = Field("2g", description="memory of each local worker")

    # --- Kafka ---------------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers")
    kafka_controller_port: int = Field(9093, description="local KRaft controller port")
    topic_activity: str = Field("activity", description="listening activity topic")
    topic_dead_letters: str = Field("activity-dead-letters", description="rejected events topic")
    kafka_partitions: int = Field(2, description="partitions of the activity topic")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="security.protocol of every Kafka client (confluent-kafka and Spark)")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (SASL_* protocols)")
    kafka_sasl_username: str = Field("", description="SASL user name (SASL_* protocols)")
    kafka_sasl_password: SecretStr | None = Field(None, description="secret: SASL password (environment only)")
    kafka_ssl_ca_file: Path | None = Field(None, description="PEM file of the CA that signed the brokers' "
                                           "certificates (SSL, SASL_SSL; unset: the system's CAs)")
    kafka_fail_on_data_loss: bool = Field(
        True, description="stop the stream when Kafka no longer has offsets it expects (a topic recreated or "
                          "expired); false: continue from what is there, the lost records are skipped")

    # --- MongoDB -------------------------------------------------------------------------------------
    mongo_uri: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB URI (no password here)")
    mongo_username: str = Field("", description="MongoDB user (else the one in mongo_uri, if any)")
    mongo_password: SecretStr | None = Field(None, description="secret: URL-encoded into mongo_uri if set "
                                             "(environment only)")
    mongo_auth_source: str = Field("", description="authSource: the database that holds the user (empty: the driver's default)")
    mongo_auth_mechanism: str = Field("", description="authMechanism (empty: the driver's choice; FerretDB v1 wants PLAIN)")
    mongo_tls: bool = Field(False, description="connect to MongoDB over TLS")
    mongo_tls_ca_file: Path | None = Field(None, description="PEM file of the CA for MongoDB TLS (unset: the system's CAs)")
    mongo_db: str = Field("musicrec", description="database name")
    coll_tracks: str = Field("tracks", description="catalogue with metadata and features")
    coll_errors: str = Field("extraction_errors", description="files that failed extraction")
    coll_models: str = Field("models", description="model versions, params and metrics")
    coll_neighbours: str = Field("neighbours", description="item-to-item top-K neighbours")
    coll_recommendations: str = Field("recommendations", description="per-user recommendations")
    coll_activity: str = Field("activity", description="recent activity feed for the dashboard")
    coll_dead_letters: str = Field("dead_letters", description="rejected activity events")
    coll_batches: str = Field("stream_batches", description="per-micro-batch progress of the stream")

    mongo_connect_timeout_ms: int = Field(3000, description="pymongo connectTimeoutMS")
    mongo_server_selection_timeout_ms: int = Field(5000, description="pymongo serverSelectionTimeoutMS")
    mongo_socket_timeout_ms: int = Field(300_000, description="pymongo socketTimeoutMS: a command that gets no "
                                         "answer this long fails instead of waiting forever")
    store_statements_per_command: int = Field(10, description="write statements per MongoDB command (bulk "
                                              "upserts, the connector's maxBatchSize); sizes the FerretDB pool")
    store_writers: int = Field(4, description="concurrent write commands the local store's pool is sized for "
                               "(client threads, Spark tasks writing at once)")
    store_readers: int = Field(16, description="pool connections of the local store kept for reads and open cursors")
    store_retry_limit_s: float = Field(120.0, description="a store write is retried with exponential backoff for "
                                       "this long, then the job exits (the next start resumes from the checkpoint)")
    store_retry_initial_s: float = Field(0.5, description="first wait before a store write is retried (doubles each time)")
    store_retry_max_s: float = Field(10.0, description="longest wait between two store write retries")

    # --- local services ------------------------------------------------------------------------------
    ferretdb_listen: str = Field("127.0.0.1:27017", description="FerretDB listen address")
    ferretdb_gogc: int = Field(400, description="GOGC of the local FerretDB (Go's garbage collector target; "
                               "Go's default is 100): fewer collections of the garbage every upsert leaves")
    postgres_port: int = Field(55432, description="local PostgreSQL port (FerretDB's backend, loopback only)")
    postgres_os_user: str = Field("postgres", description="OS user that runs PostgreSQL when the caller is root")
    service_timeout_s: float = Field(60.0, description="how long `up` waits for a service")

    # --- feature extraction --------------------------------------------------------------------------
    sample_rate: int = Field(22050, description="decode sample rate")
    clip_seconds: float = Field(30.0, description="maximum seconds of audio read per file")
    min_seconds: float = Field(1.0, description="shorter audio is an error")
    extract_partitions: int = Field(0, description="partitions of the file list (0: auto, at least 2 x default "
                                    "parallelism, at most extract_files_per_task files each)")
    extract_files_per_task: int = Field(16, description="files per extraction task when extract_partitions is 0")
    extract_timeout_s: float = Field(120.0, description="time limit per file (decode + features); a file over "
                                     "it is recorded as `timeout` and the task goes on")
    extract_isolation: bool = Field(True, description="extract each file in a child process of the Python "
                                    "worker, so a native crash or a hang costs that file only")
    numba_cache_dir: Path = Field(ROOT / ".cache" / "numba", description="numba's cache of librosa's compiled "
                                  "kernels (see feature_extraction/numba_cache.py)")

    # --- model ---------------------------------------------------------------------------------------
    lsh_bucket_length: float = Field(4.0, description="BucketedRandomProjectionLSH bucketLength")
    lsh_band_size: int = Field(8, description="projections per band (AND inside a band)")
    lsh_bands: int = Field(32, description="bands (OR across bands); numHashTables = size x bands")
    pca_k: int = Field(64, description="PCA dimension after scaling (0: no reduction)")
    recall_target: float = Field(0.95, description="tuning target for recall@10")
    top_k: int = Field(10, description="recommendations and neighbours per item")
    seed: int = Field(42, description="random seed for fits and samples")
    lsh_tune: bool = Field(True, description="fit: pick PCA and LSH parameters by tuning (else the lsh_* and pca_k above)")
    tune_queries: int = Field(500, description="fit: sample queries for tuning")
    eval_queries: int = Field(1000, description="fit: sample queries for evaluation against exact neighbours")

    # --- streaming -----------------------------------------------------------------------------------
    trigger_seconds: float = Field(0.5, description="micro-batch trigger interval")
    max_offsets_per_trigger: int = Field(20000, description="maxOffsetsPerTrigger")
    starting_offsets: str = Field("earliest", description="startingOffsets for a new checkpoint")
    max_per_artist: int = Field(2, description="at most this many recommendations per artist")
    taste_half_life_events: float = Field(20.0, description="half-life of a user's taste, in events")
    min_skip_seconds: float = Field(10.0, description="a skip within this many seconds counts fully; later ones less")
    history_size: int = Field(500, description="distinct heard tracks kept per user (never recommended again)")
    event_max_future_seconds: float = Field(300.0, description="event_time at most this far after its Kafka record")
    event_max_age_days: float = Field(30.0, description="event_time at most this many days before its Kafka record")
    stream_partitions: int = Field(1, description="tasks per micro-batch of the stream (more than 1: its users hashed "
                                   "over them by a shuffle)")
    stream_state_cache_users: int = Field(50_000, description="users' states a stream worker keeps per partition "
                                          "between micro-batches (0: read every user from the store)")
    stream_rank_chunk_users: int = Field(250, description="a stream task ranks its users this many at a time, "
                                         "longest waiting first, and writes each chunk while it ranks the next "
                                         "(0: all, then the writes)")
    stream_checkpoint_checksums: bool = Field(False, description="a stream checkpoint on a local disk keeps "
                                              "Hadoop's .crc file beside each offset and commit log file "
                                              "(false: 40-60 ms less per micro-batch here; other file systems "
                                              "are unaffected)")
    stream_lazy_zip_caches: bool = Field(True, description="a stream worker re-reads a zip archive on its Python "
                                         "path only when it changed (pyspark 4.1 on Python < 3.12 re-reads them "
                                         "all before every task; false: as pyspark does)")
    activity_feed_size: int = Field(500, description="newest events kept in the activity feed collection")
    stream_batches_kept: int = Field(5000, description="newest micro-batch metrics documents kept (0: all)")


    # --- dashboard -----------------------------------------------------------------------------------
    dashboard_port: int = Field(8501, description="Streamlit port")
    dashboard_address: str = Field("127.0.0.1", description="address Streamlit listens on (0.0.0.0: every interface)")
    dashboard_ttl_s: float = Field(2.0, description="cache TTL of dashboard queries")
    dashboard_cache_dir: Path = Field(ROOT / "data" / "cache" / "dashboard",
                                      description="dashboard's local snapshot of the catalogue and its 2-D map")

    @field_validator("mongo_uri")
    @classmethod
    def _no_password_in_uri(cls, uri: str) -> str:
        userinfo = urlsplit(uri).netloc.rpartition("@")[0]
        if ":" in userinfo:
            raise ValueError("MUSICREC_MONGO_URI holds a password: put it in MUSICREC_MONGO_PASSWORD instead "
                             "(it would show in process lists, logs and the Spark UI)")
        return uri

    @property
    def mongo_uri_with_secret(self) -> str:
        """The URI the clients (pymongo, the Spark connector) use: user and password URL-encoded into it, TLS
        and authSource as options. Built here and nowhere else; never log it."""
        parts = urlsplit(self.mongo_uri)
        uri_user, _, host = parts.netloc.rpartition("@")
        user = self.mongo_username or unquote(uri_user)
        netloc = host
        if user:
            secret = "" if self.mongo_password is None else ":" + quote(self.mongo_password.get_secret_value(), safe="")
            netloc = f"{quote(user, safe='')}{secret}@{host}"
        query = dict(parse_qsl(parts.query))
        if self.mongo_tls:
            query["tls"] = "true"
        if self.mongo_tls_ca_file is not None:
            query["tlsCAFile"] = str(self.mongo_tls_ca_file)
        if self.mongo_auth_source:
            query["authSource"] = self.mongo_auth_source
        if self.mongo_auth_mechanism:
            query["authMechanism"] = self.mongo_auth_mechanism
        return urlunsplit(parts._replace(netloc=netloc, path=parts.path or "/", query=urlencode(query)))

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return init_settings, env_settings, _WithoutSecrets(dotenv_settings), file_secret_settings

    @property
    def mongo_where(self) -> str:
        """db@hosts of the store, for messages (never the user or password)."""
        return f"{self.mongo_db}@{urlsplit(self.mongo_uri).netloc.rpartition('@')[2]}"

    def secret_values(self) -> list[str]:
        """The secrets' values (for redaction and tests), with their URL-encoded forms."""
        out = []
        for name in SECRETS:
            value = getattr(self, name)
            if value is not None and value.get_secret_value():
                out += [value.get_secret_value(), quote(value.get_secret_value(), safe="")]
        return out

    def summary(self) -> dict[str, str]:
        """Every setting as text, with secrets masked: safe to log or print."""
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            out[name] = "***" if isinstance(value, SecretStr) else str(value)
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reference_table() -> str:
    """The README's configuration reference: one row per setting (paths shown relative to the root)."""
    rows = ["| environment variable | default | what |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        value = field.get_default(call_default_factory=True)   # the code's default, whatever the environment
        if isinstance(value, str) and value.startswith(f"{ROOT}/"):   # a StorageUri's local default
            value = Path(value)
        if value is None or isinstance(value, SecretStr):
            text = "(unset)" if value is None or not value.get_secret_value() else "***"
        elif isinstance(value, Path):
            rel = value.relative_to(ROOT) if value.is_relative_to(ROOT) else value
            text = "." if str(rel) == "." else (f"./{rel}" if not rel.is_absolute() else str(rel))
        else:
            text = str(value)
        rows.append(f"| `MUSICREC_{name.upper()}` | `{text}` | {field.description or ''} |")
    return "\n".join(rows)
