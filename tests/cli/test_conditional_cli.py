"""``molvae train --condition`` then ``molvae sample --condition NAME=VALUE``."""

from pathlib import Path

import pandas as pd
import pytest

from molvae.cli import main
from molvae.model.store import load_model

TINY = ["--preset", "tiny", "--epochs", "1", "--batch-size", "16", "--eval-samples", "8",
        "--eval-molecules", "4", "--device", "cpu", "--allow-degenerate", "--no-track",
        "--no-log-model", "-q"]


def test_train_and_sample_for_targets(prepared_dir: Path, tiny_model: Path, mlflow_store: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", str(prepared_dir), "--out", "cvae", "--condition",
                 "qed,logp", *TINY]) == 0
    model = load_model("cvae", device="cpu")
    assert model.config.condition_names == ["qed", "logp"]
    assert model.condition_std.shape == (2,) and bool((model.condition_std > 0).all())
    assert main(["sample", "--model", "cvae", "-n", "12", "--out", "s.csv", "--condition",
                 "qed=0.9,logp=2.5", "--no-track", "-q"]) == 0
    assert len(pd.read_csv("s.csv")) == 12

    assert main(["sample", "--model", "cvae", "-n", "2", "--condition", "sa=3",
                 "--no-track", "-q"]) == 2
    assert "not trained on condition(s) sa" in capsys.readouterr().err
    assert main(["sample", "--model", str(tiny_model), "-n", "2", "--condition", "qed=0.9",
                 "--no-track", "-q"]) == 2
    assert "not a conditional model" in capsys.readouterr().err
    assert main(["sample", "--model", "cvae", "-n", "2", "--condition", "qed",
                 "--no-track", "-q"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    # the architecture is fixed on resume
    assert main(["train", "--data", str(prepared_dir), "--out", "cvae", "--condition", "qed",
                 "--resume", *TINY]) == 2
    assert "condition" in capsys.readouterr().err
