"""The entry point MLflow runs to build the served model (models from code: nothing pickled)."""

import mlflow

from molvae.tracking.serving import SelfiesVAEPyfunc

mlflow.models.set_model(SelfiesVAEPyfunc())
