"""The fitted model as plain numpy, for everything that must not start Spark to use it.

The fit (jobs/fit_model.py) saves each version in its own folder:

    <models_dir>/<version>/pipeline     the Spark `PipelineModel` (scaler, optional PCA, BRP LSH)
    <models_dir>/<version>/bundle.npz   the same maths as numpy arrays, plus the catalogue in model space

`models_dir` is a path or a URI (hdfs://, s3a://) that the driver and the executors share (common/storage.py).

and records the version in the `models` collection with a pointer document `{_id: "current", version}`.
The streaming job and the dashboard call `load_bundle(settings)` to get whatever is current; the
bundle's `transform` equals the Spark pipeline (tested), and its `index()` is the banded LSH index.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np

from common import storage
from conf import Settings
from jobs.lsh import BandedIndex

CURRENT = "current"
BUNDLE_FILE = "bundle.npz"
PIPELINE_DIR = "pipeline"


@dataclass
class ModelBundle:
    version: str
    feature_version: str
    mean: np.ndarray                 # (d_in,) StandardScaler mean
    scale: np.ndarray                # (d_in,) StandardScaler std (zeros mean a constant feature)
    pca: np.ndarray | None           # (d_in, d_out) PCA matrix, or None
    projections: np.ndarray          # (band_size * bands, d_out) BRP random unit vectors
    bucket_length: float
    band_size: int
    ids: np.ndarray                  # (n,) track ids of the catalogue
    vectors: np.ndarray              # (n, d_out) the catalogue in model space, float32
    _index: BandedIndex | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return int(self.projections.shape[1])

    @property
    def bands(self) -> int:
        return int(self.projections.shape[0]) // self.band_size

    def standardise(self, features: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Raw feature vectors (n, d_in) -> the scaled space before any reduction (StandardScaler).

        Spark's StandardScaler multiplies by 1/std, and by 0 where std is 0 (a constant feature).
        """
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        if x.shape[1] != len(self.mean):
            raise ValueError(f"model {self.version} expects {len(self.mean)} features, got {x.shape[1]}")
        inv = np.divide(1.0, self.scale, out=np.zeros_like(self.scale, dtype=np.float64), where=self.scale != 0)
        return ((x - self.mean) * inv).astype(dtype, copy=False)

    def transform(self, features: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Raw feature vectors (n, d_in) -> model space (n, d_out): equals the Spark pipeline.

        Spark's PCA does not centre (the scaler already did): it only multiplies by the components.
        """
        z = self.standardise(features)
        if self.pca is not None:
            z = z @ self.pca
        return z.astype(dtype, copy=False)

    def index(self) -> BandedIndex:
        """The catalogue hashed into its bands: built on first use, then cached."""
        if self._index is None:
            self._index = BandedIndex.build(self.vectors, self.ids, self.projections, self.bucket_length,
                                            self.band_size)
        return self._index

    def save(self, path: str) -> str:
        """Write the bundle whole to a path or URI."""
        meta = {"version": self.version, "feature_version": self.feature_version,
                "bucket_length": float(self.bucket_length), "band_size": int(self.band_size)}
        arrays = dict(mean=self.mean, scale=self.scale, projections=self.projections, ids=self.ids,
                      vectors=np.asarray(self.vectors, dtype=np.float32), meta=np.array(json.dumps(meta)))
        if self.pca is not None:
            arrays["pca"] = self.pca
        buf = io.BytesIO()   # np.savez on a path would append ".npz" to other names
        np.savez(buf, **arrays)
        storage.write_bytes(str(path), buf.getvalue())
        return str(path)

    @classmethod
    def read(cls, path: str) -> "ModelBundle":
        with np.load(storage.open_input(str(path)), allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return cls(version=meta["version"], feature_version=meta["feature_version"],
                       mean=z["mean"], scale=z["scale"], pca=z["pca"] if "pca" in z.files else None,
                       projections=z["projections"], bucket_length=float(meta["bucket_length"]),
                       band_size=int(meta["band_size"]), ids=z["ids"],
                       vectors=np.asarray(z["vectors"], dtype=np.float32))


def version_dir(settings: Settings, version: str) -> str:
    return storage.join(settings.models_dir, version)


def bundle_path(settings: Settings, version: str) -> str:
    return storage.join(version_dir(settings, version), BUNDLE_FILE)


def pipeline_path(settings: Settings, version: str) -> str:
    return storage.join(version_dir(settings, version), PIPELINE_DIR)


def current_version(settings: Settings) -> str | None:
    """The version the `models` pointer document names, or None when no model was fitted yet."""
    from common.store import database

    doc = database(settings)[settings.coll_models].find_one({"_id": CURRENT})
    return doc.get("version") if doc else None


def set_current(settings: Settings, version: str) -> None:
    from common.store import database

    database(settings)[settings.coll_models].replace_one({"_id": CURRENT}, {"_id": CURRENT, "version": version},
                                                         upsert=True)


def load_bundle(settings: Settings, version: str | None = None) -> ModelBundle:
    """The numpy bundle of `version` (None: the current one). No Spark needed."""
    if version is None:
        version = current_version(settings)
        if version is None:
            raise LookupError(f"no current model in {settings.mongo_db}.{settings.coll_models}: "
                              "run `./spark-submit.sh jobs/fit_model.py` first")
    path = bundle_path(settings, version)
    if not storage.exists(path):
        raise FileNotFoundError(f"model {version}: no bundle at {path}")
    return ModelBundle.read(path)


def load_catalogue(settings: Settings, bundle: ModelBundle):
    """The model's tracks (its ids and vectors) with their metadata from the `tracks` collection."""
    from common.catalogue import META_FIELDS, Catalogue
    from common.store import database

    docs = database(settings, 30_000)[settings.coll_tracks].find({}, META_FIELDS)
    return Catalogue.from_documents(bundle.ids, bundle.vectors, docs, version=bundle.version)


def bundle_from_pipeline(model, version: str, feature_version: str, band_size: int, ids: np.ndarray,
                         vectors: np.ndarray | None = None, features: np.ndarray | None = None) -> ModelBundle:
    """The numpy twin of a fitted PipelineModel [.., StandardScaler, (PCA), BucketedRandomProjectionLSH]:
    the catalogue is given in model space (`vectors`) or as raw `features` that the bundle transforms."""
    from pyspark.ml.feature import BucketedRandomProjectionLSHModel, PCAModel, StandardScalerModel

    stages = list(model.stages)
    scaler = next(s for s in stages if isinstance(s, StandardScalerModel))
    pca = next((s for s in stages if isinstance(s, PCAModel)), None)
    brp = next(s for s in stages if isinstance(s, BucketedRandomProjectionLSHModel))
    n_tables = brp.getNumHashTables()
    mean = scaler.mean.toArray() if scaler.getWithMean() else np.zeros(len(scaler.std))
    std = scaler.std.toArray() if scaler.getWithStd() else np.ones(len(scaler.std))
    projections = np.asarray(brp._call_java("randMatrix").toArray(), dtype=np.float64)
    if projections.shape[0] != n_tables or n_tables % band_size:
        raise ValueError(f"BRP model has {projections.shape[0]} projections: not {n_tables} bands of {band_size}")
    bundle = ModelBundle(version=version, feature_version=feature_version,
                         mean=np.asarray(mean, dtype=np.float64), scale=np.asarray(std, dtype=np.float64),
                         pca=None if pca is None else np.asarray(pca.pc.toArray(), dtype=np.float64),
                         projections=projections, bucket_length=float(brp.getBucketLength()),
                         band_size=int(band_size), ids=np.asarray(ids, dtype=np.int64),
                         vectors=np.zeros((0, projections.shape[1]), dtype=np.float32))
    if (vectors is None) == (features is None):
        raise ValueError("give the catalogue either as vectors or as features")
    bundle.vectors = bundle.transform(features) if features is not None else np.asarray(vectors, dtype=np.float32)
    if len(bundle.vectors) != len(bundle.ids):
        raise ValueError(f"{len(bundle.ids)} ids for {len(bundle.vectors)} vectors")
    return bundle
