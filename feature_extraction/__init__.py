"""FMA-style audio and metadata -> feature vectors in MongoDB `tracks`.

- features.py   the feature vector (FMA's 518 values + tempo): feature_names(), FEATURE_VERSION,
                feature_version(settings), extract(y); pure functions
- dsp.py        the fast primitives behind it, each equal to its librosa counterpart
- audio.py      decode a file to mono float32 at the target rate, or an AudioError with a reason
- metadata.py   FMA tracks.csv / raw_tracks.csv / genres.csv loaders
- layout.py     the FMA folder layout (NNN/NNNNNN.mp3)
- worker.py     what runs on the executors (extract and write, warm once per Python worker)
- job.py        the Spark batch job: run(spark, settings, ...) and its __main__
- corpus.py     the demo corpus builder (Debian game soundtracks laid out like FMA)
- fma_csv.py    writers of FMA's metadata files in their real layouts
- numba_cache.py  librosa's numba kernels cached safely by concurrent processes (installed here, before
                any librosa import)
"""
from feature_extraction import numba_cache as _numba_cache

_numba_cache.install()
