"""One module per stage (its Config, Result and ``run``), and the registry that lists them."""

from molvae.stages.registry import STAGES, Stage, get_stage, run_stage

__all__ = ["STAGES", "Stage", "get_stage", "run_stage"]
