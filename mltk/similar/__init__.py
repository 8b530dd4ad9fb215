"""Similar and duplicate photos: vectors, a faiss index over user ids, near-duplicate groups.

Embedding vectors come from a trained run (:func:`embed_paths`, ``mltk embed``) or elsewhere
(CLIP, a catalogue's own) and arrive as a vectors folder, a ``.npy`` matrix or a Parquet
file; an index over them answers "more like this" with exact search for small collections and
faiss IVF for large ones, filtered by metadata.
Duplicates need no model: perceptual hashes find candidates, ORB + RANSAC confirms them.

    import mltk.settings
    from mltk.similar import SimilarityIndex, find_duplicates, read_vectors

    settings = mltk.settings.load("similar")            # configs/similar.yaml < env < values
    index, report = SimilarityIndex.build(read_vectors("vectors/"), settings)
    index.save("index/")                                # atomic, checksummed, no pickle
    SimilarityIndex.load("index/").search(queries, k=10)
    find_duplicates(paths, settings)                    # path, group, duplicate_of, score
    embed_paths(Classifier.load("runs/first"), paths, dim=128).save("vectors/")

Modules: ``settings`` (the typed settings), ``embed`` (image vectors of a trained run),
``vectors`` (the on-disk vectors format and the readers of .npy and Parquet), ``reduce`` (PCA
and L2 normalisation), ``index`` (the faiss index with ids: build, add, remove, search),
``store`` (the index folder: generations, manifest, checksums), ``filters`` (``--where``
expressions), ``queries`` (query records), ``hashing`` (perceptual hashes), ``dedup``
(near-duplicate groups), ``sheet`` (contact sheets of groups), ``report`` (report.html of
the groups), ``itemdups`` (catalogue items that show the same product, for
``recommend query --dedup``).

Elsewhere: the ``embed`` job kind (:mod:`mltk.jobs.kinds`) and the ``similar`` predictor that
``mltk serve`` uses for an index folder (:mod:`mltk.predictors.similar`).
"""

from mltk.similar.dedup import find_duplicates
from mltk.similar.embed import Embedding, embed_paths, model_identity
from mltk.similar.filters import Where
from mltk.similar.index import SimilarityIndex, choose_factory, recall_at
from mltk.similar.queries import query_records
from mltk.similar.reduce import PCA, l2_normalize
from mltk.similar.settings import SimilarSettings
from mltk.similar.vectors import VectorSet, read_vectors, write_vectors

__all__ = ["PCA", "Embedding", "SimilarSettings", "SimilarityIndex", "VectorSet", "Where",
           "choose_factory", "embed_paths", "find_duplicates", "l2_normalize", "model_identity",
           "query_records", "read_vectors", "recall_at", "write_vectors"]
