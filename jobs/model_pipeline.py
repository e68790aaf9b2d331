"""The Spark ML pipeline of the model: the track's feature array as a vector, standardised, optionally
reduced by PCA, hashed by BucketedRandomProjectionLSH into band_size * bands single-projection tables.

    ArrayToVector(features -> features_vec)      our one Python stage: array<double> -> ml Vector
    StandardScaler(withMean, withStd)            features_vec -> scaled
    PCA(k)                                       scaled -> reduced           (left out when pca_k = 0)
    BucketedRandomProjectionLSH(numHashTables, bucketLength, seed) -> hashes

The fitted `PipelineModel` saves and loads like any other (the Python stage is written with Spark's
default params writer), so a fresh session can apply it straight to `tracks` rows.
"""
from __future__ import annotations

from pyspark import keyword_only
from pyspark.ml import Pipeline, Transformer
from pyspark.ml.feature import PCA, BucketedRandomProjectionLSH, StandardScaler
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

FEATURES = "features"
VECTOR = "features_vec"
SCALED = "scaled"
REDUCED = "reduced"
HASHES = "hashes"


class ArrayToVector(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """array<double> column -> dense ml Vector column (pyspark.ml.functions.array_to_vector)."""

    @keyword_only
    def __init__(self, inputCol: str = FEATURES, outputCol: str = VECTOR):
        super().__init__()
        self._set(**self._input_kwargs)

    def _transform(self, dataset):
        from pyspark.ml.functions import array_to_vector

        return dataset.withColumn(self.getOutputCol(), array_to_vector(dataset[self.getInputCol()]))


def model_column(pca_k: int) -> str:
    """The column holding a track in model space (what the LSH hashes)."""
    return REDUCED if pca_k else SCALED


def build_pipeline(pca_k: int, bucket_length: float, num_hash_tables: int, seed: int) -> Pipeline:
    stages = [ArrayToVector(inputCol=FEATURES, outputCol=VECTOR),
              StandardScaler(inputCol=VECTOR, outputCol=SCALED, withMean=True, withStd=True)]
    if pca_k:
        stages.append(PCA(k=pca_k, inputCol=SCALED, outputCol=REDUCED))
    stages.append(BucketedRandomProjectionLSH(inputCol=model_column(pca_k), outputCol=HASHES,
                                              numHashTables=num_hash_tables, bucketLength=bucket_length,
                                              seed=seed))
    return Pipeline(stages=stages)
