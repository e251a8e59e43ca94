"""Everything that talks to MLflow lives in this package (an architecture test holds that wall).

Stages record through a :class:`Tracker` and resolve model URIs with
:func:`local_model_dir`; neither imports MLflow until it is used, so ``--no-track`` runs and
``molvae --help`` never load it. ``serving`` holds the pyfunc model for ``mlflow models serve``;
``server`` runs it behind ``molvae serve``'s request limits.
"""

from molvae.tracking.models import is_model_uri, local_model_dir
from molvae.tracking.runs import MlflowTracker, NullTracker, Tracker, configure, stage_run

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "configure", "is_model_uri",
           "local_model_dir", "stage_run"]
