"""Similar-item recommendation without ratings (``mltk recommend``).

Association rules over category baskets give meta-categories; a Keras classifier predicts the
top meta-categories of a purchase; candidates are cut by kind, sex and a price band through an
index built at fit time; a pairwise RankNet orders them. The functions are named after the
commands they back: ``mine_rules`` (``recommend rules``), ``fit``, ``Recommender.query`` and
``evaluate``; they take DataFrames and a :class:`RecommendSettings`.

    import mltk.settings
    from mltk.recommend import Recommender, evaluate, fit

    settings = mltk.settings.load("recommend", k=5)     # configs/recommend.yaml < env < values
    rec = fit(items_df, tx_df, settings)                # in memory: nothing written yet
    rec.save("model/")
    Recommender.load("model/").query(item_id, k=10)
    evaluate(rec, heldout_tx_df)                        # hit rate, NDCG, coverage vs baselines

Modules: ``settings`` (the typed settings), ``data`` (table checks and readers), ``rules``
(association rules, meta-categories), ``features`` (what the networks see), ``models`` (the
Keras networks, NDCG), ``fitting`` (fit), ``index`` (the candidate index), ``recommender``
(the fitted model: save, load, query), ``evaluation`` (evaluate), ``queries`` (query files).
"""

from mltk.recommend.evaluation import evaluate
from mltk.recommend.fitting import fit
from mltk.recommend.models import ndcg, sample_pairs
from mltk.recommend.queries import QueryRow, read_queries
from mltk.recommend.recommender import Recommender
from mltk.recommend.rules import mine_rules, write_rules
from mltk.recommend.settings import RecommendSettings

__all__ = ["QueryRow", "RecommendSettings", "Recommender", "evaluate", "fit", "mine_rules",
           "ndcg", "read_queries", "sample_pairs", "write_rules"]
