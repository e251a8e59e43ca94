"""The optimize stage: find molecules that maximize an objective, under a fixed oracle budget.

The stage reads the model and parses the objective, then runs
:func:`molvae.optim.optimize.optimize` (whose docstring gives the rules that keep runs fair and
paid calls safe) and records the run in MLflow. Its options are the library's
:class:`~molvae.optim.settings.Settings` (each method's options a block of its own, flags
``--METHOD-OPTION``) plus the model, the objective, the output folder and the device.

Outputs in ``OUT``: candidates.csv (ranked), trace.csv and trace.png (best and top-10 mean
against oracle calls), summary.json (top-1/3/10, the area under the top-10 curve, pass
counts), calls.csv (every scored molecule, appended as it is scored, so an interrupted run
keeps them; an interrupt also writes the rest with ``stop_reason: interrupted``). A run that
found no solution fails with advice unless ``allow_degenerate``.

Paid calls are never deleted: a rerun into the same ``OUT`` with the same objective reuses the
scores in calls.csv (the objective is not called again for those molecules; they count toward
``--budget``, so a rerun of an interrupted run finishes it), and a calls.csv of another
objective is moved aside to calls-N.csv (reused when that objective runs again). An objective
that fails on every molecule of the first batch (it raises, returns NaN, inf or no number)
stops the run at once, naming the objective and its first error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from molvae.config import ConfigError, device_option, model_option, option
from molvae.model.store import load_model
from molvae.optim.objective_spec import parse_objective
from molvae.optim.objectives import Objective
from molvae.optim.optimize import optimize
from molvae.optim.settings import Settings
from molvae.tracking import Tracker, local_model_dir


@dataclass(kw_only=True)
class OptimizeConfig(Settings):
    """Options of ``molvae optimize``: the library's settings, plus what the stage reads and
    where it writes."""

    model: str = model_option()
    objective: str = option("qed", help="what to maximize: qed, plogp, min:sa, mw_range:300:450, "
                            "similarity:SMILES, package.module:function or an MPO FILE.yaml; an "
                            "import path (here or in the YAML) imports that module and calls the "
                            "function with every molecule, running its code as `import` would, "
                            "so name only your own code (the standard library is refused)")
    out: Path = option(Path("optimize"), help="output folder; its calls.csv of paid oracle calls "
                       "is kept and reused by a rerun of the same objective (another "
                       "objective's is moved to calls-N.csv, kept and reused the same way)")
    device: str = device_option()

    def validate(self) -> None:
        super().validate()
        self.parsed_objective()

    def parsed_objective(self) -> Objective:
        """The objective; a bad spec raises a ConfigError naming what is wrong."""
        try:
            return parse_objective(self.objective)
        except ConfigError as err:
            raise ConfigError(f"objective: {err}") from None


@dataclass
class OptimizeResult:
    """Where the candidates went and the headline numbers."""

    out: Path
    metrics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        m = self.metrics
        text = (f"{m['method']} on {m['objective']}: top-1 {m['top1']:.3f}, top-10 mean "
                f"{m['top10_mean']:.3f}, AUC top-10 {m['auc_top10']:.3f} after {m['n_calls']} of "
                f"{m['budget']} oracle calls ({m['n_solutions']} solutions; "
                f"{m['n_pass_filters']} pass the guards) in {m['wall_seconds']:.0f} s")
        if "improvement" in m:
            text += f"; improvement over the start {m['improvement']:+.3f}"
        if m.get("n_reused_calls"):
            text += (f"; {m['n_reused_calls']} of the calls reused from "
                     f"{self.out / 'calls.csv'}, not paid again")
        return f"{text}\n  → {self.out / 'candidates.csv'}"

    def headline(self) -> dict[str, float]:
        """The best objective found, the top-10 mean and the sample efficiency (AUC)."""
        keys = ("top1", "top10_mean", "auc_top10", "n_solutions", "improvement")
        return {k: float(self.metrics[k]) for k in keys if k in self.metrics}


def run(config: OptimizeConfig, tracker: Tracker | None = None) -> OptimizeResult:
    """Optimize ``config.objective`` in the latent space of ``config.model``."""
    tracker = tracker or Tracker()
    objective = config.parsed_objective()
    model = load_model(local_model_dir(config.model), config.device)
    outcome = optimize(model, objective, config, config.out)
    metrics, trace = outcome.metrics, outcome.trace
    every = max(1, len(trace) // 200)  # at most ~200 points per curve in MLflow
    for row in trace.iloc[every - 1::every].to_dict("records"):
        step = int(row.pop("oracle_calls"))
        tracker.log_metrics({f"trace/{name}": value for name, value in row.items()}, step=step)
    tracker.log_metrics({k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float, bool))})
    tracker.set_tags({"objective": objective.name, "method": config.method})
    for path in outcome.files:
        tracker.log_artifact(path)
    return OptimizeResult(config.out, metrics)
