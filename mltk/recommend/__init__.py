"""Similar-item recommendation without ratings (``mltk recommend``).

Association rules over category baskets give meta-categories; a Keras classifier predicts the
top meta-categories of a purchase; candidates are cut by kind, sex and a price band through an
index built at fit time; a pairwise RankNet orders them.

    from mltk.recommend import fit, Recommender, evaluate
    fit("items.csv", "transactions.csv", "model/", cfg)      # cfg: configs/recommend.yaml
    Recommender("model/").query(item_id, k=10, explain=True)
"""

from mltk.recommend.models import ndcg, sample_pairs
from mltk.recommend.pipeline import Recommender, evaluate, fit, run_rules, write_rules
from mltk.recommend.queries import QueryRow, read_queries

__all__ = ["QueryRow", "Recommender", "evaluate", "fit", "ndcg", "read_queries", "run_rules",
           "sample_pairs", "write_rules"]
