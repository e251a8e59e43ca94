"""The GPU path, checked on CPU: bf16 autocast with float32 GRUs, no per-step host sync, no
value read on the device while building a batch and its loss, resuming with more saved CUDA
generators than devices.

What these cannot see (cuDNN kernels, real transfer timings) only a device check shows
(benchmarks/gpu_check.sh; docs/gpu.md).
"""

import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from molvae.config import from_dict
from molvae.tracking import Tracker
from molvae.training import loop, validation
from molvae.training.checkpoint import load_checkpoint, restore_cuda_rng, save_checkpoint
from molvae.training.config import TrainConfig
from molvae.training.distributed import Distributed
from molvae.training.stopping import StopRequest

# one torch thread: "auto" follows the load average, and runs compared bit for bit must
# sum in the same order
FAST = {"preset": "tiny", "epochs": 1, "batch_size": 8, "eval_samples": 4, "eval_molecules": 4,
        "log_model": False, "device": "cpu", "lr_warmup_steps": 2, "kl_warmup_steps": 5,
        "allow_degenerate": True, "threads": 1}

aten = torch.ops.aten
# ops that wait for the device: a value read on the host, or an output whose size is data
DATA_DEPENDENT = {aten._local_scalar_dense, aten.nonzero, aten.masked_select, aten._unique,
                  aten._unique2, aten.unique_dim, aten.unique_consecutive, aten.equal,
                  aten.is_nonzero}
COUNTED_REPEATS = {aten.repeat_interleave.Tensor, aten.repeat_interleave.self_Tensor}
FROM_PYTHON = aten.lift_fresh  # torch.tensor / as_tensor of Python data: made on the host


def config(data: Path, out: Path, **options: object) -> TrainConfig:
    return from_dict(TrainConfig, {**FAST, "data": str(data), "out": str(out), **options})


def _where() -> str:
    """The innermost molvae line (else the innermost line) of the current stack."""
    frames = [f for f in traceback.extract_stack()[:-3] if "test_gpu_path" not in f.filename]
    ours = [f for f in frames if "/molvae/" in f.filename] or frames
    return f"{Path(ours[-1].filename).name}:{ours[-1].lineno} {ours[-1].line}"


class SyncFence(TorchDispatchMode):
    """Counts the host syncs a CUDA run of the same code would make, on CPU.

    On CPU every tensor is on the host, so the mode tracks where each would live on a GPU:
    on the host are the tensors named at the start (host lengths), those made from Python
    data, those computed from host tensors only, and a packed sequence's batch sizes (as
    PyTorch keeps them); all others are on the device. A data-dependent op, or ``.item()``,
    ``.tolist()``, ``.numpy()``, ``.cpu()`` on a device tensor, is a sync; ``syncs`` counts
    them by the molvae line that made them.
    """

    def __init__(self, host: list[torch.Tensor]) -> None:
        super().__init__()
        self.host = WeakIdKeyDictionary({t: True for t in host})
        self.syncs: Counter[str] = Counter()

    def on_device(self, tensor: torch.Tensor) -> bool:
        return tensor not in self.host

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        device_inputs = [t for t in inputs if self.on_device(t)]
        packet = func.overloadpacket
        masked = packet in (aten.index, aten.index_put, aten.index_put_) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] or ())
        sized_by_data = func in COUNTED_REPEATS and kwargs.get("output_size") is None
        if device_inputs and (packet in DATA_DEPENDENT or masked or sized_by_data):
            self.syncs[f"{packet.__name__} at {_where()}"] += 1
        out = func(*args, **kwargs)
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        on_host = packet is FROM_PYTHON or bool(inputs and not device_inputs)
        for tensor in outputs:
            if on_host:
                self.host[tensor] = True
            else:
                self.host.pop(tensor, None)
        if packet is aten._pack_padded_sequence:
            self.host[outputs[1]] = True
        return out

    @contextmanager
    def reading_values(self, monkeypatch: pytest.MonkeyPatch) -> Iterator["SyncFence"]:
        """The fence, with the copies to the host that do not dispatch on CPU counted too."""
        for name in ("tolist", "numpy", "cpu"):
            method = getattr(torch.Tensor, name)

            def counted(tensor: torch.Tensor, *args, _method=method, _name=name, **kwargs):
                if self.on_device(tensor):
                    self.syncs[f"{_name} at {_where()}"] += 1
                return _method(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)
        with self:
            yield self
        monkeypatch.undo()


def syncs_over(steps: int, data: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Host syncs of a fresh run's first ``steps`` training steps and the checkpoint after
    them, with logging and checkpoints far apart."""
    cfg = config(data, out, log_every=1000, checkpoint_every=1000)
    run = loop._start(cfg, Tracker(), Distributed(0, 1, torch.device("cpu")))
    fence = SyncFence([run.train_tokens.host_lengths])
    with fence.reading_values(monkeypatch):
        assert loop._train_epoch(run, StopRequest(steps, None, cfg.log_every)) is None
    assert run.progress.step == steps
    return fence.syncs


def test_host_syncs_do_not_grow_with_the_steps(prepared_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    once = syncs_over(3, prepared_dir, tmp_path / "a", monkeypatch)
    twice = syncs_over(6, prepared_dir, tmp_path / "b", monkeypatch)
    assert twice == once, f"syncs that grow with the steps: {dict(twice - once)}"


def test_the_sync_fence_tells_host_from_device_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    lengths = torch.tensor([3, 2])  # named as host
    weights = torch.ones(2)  # made before: on the device
    fence = SyncFence([lengths])
    with fence.reading_values(monkeypatch):
        int(lengths.max()), lengths.tolist(), torch.as_tensor([0, 1]).tolist()  # host: free
        doubled = weights * 2
        doubled[doubled > 1], doubled.tolist(), float(doubled.sum()), (lengths * doubled).cpu()
    assert sorted(k.split()[0] for k in fence.syncs.elements()) == [
        "_local_scalar_dense", "cpu", "index", "tolist"]


def test_the_sync_fence_sees_a_per_step_item(prepared_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The fence is not blind: a loss read at every step is counted once per step."""
    step = loop._train_step

    def reading(run: loop._Run, batch: object, beta: float) -> dict[str, torch.Tensor]:
        terms = step(run, batch, beta)
        terms["loss"].item()
        return terms

    monkeypatch.setattr(loop, "_train_step", reading)
    once = syncs_over(2, prepared_dir, tmp_path / "a", monkeypatch)
    monkeypatch.setattr(loop, "_train_step", reading)
    twice = syncs_over(4, prepared_dir, tmp_path / "b", monkeypatch)
    grown = twice - once
    assert sum(grown.values()) == 2 and all("_local_scalar_dense" in k for k in grown)


def test_training_and_validation_under_bf16_autocast(prepared_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole run (steps, validation, the prior's samples) under autocast, as ``--amp``
    runs it on CUDA: losses come out float32 and finite, the GRUs see float32 inputs with
    autocast off inside, and the layers around them do run in bf16."""
    seen: Counter[tuple[str, str]] = Counter()

    def hook(module: nn.Module, args: tuple, out: object) -> None:
        if isinstance(module, nn.GRU):
            data = args[0].data if isinstance(args[0], nn.utils.rnn.PackedSequence) else args[0]
            seen["gru", f"in {data.dtype}, out {out[1].dtype}, autocast "
                 f"{torch.is_autocast_enabled('cpu')}"] += 1
        elif isinstance(module, nn.Linear):
            seen["linear", str(out.dtype)] += 1

    losses: list[torch.Tensor] = []
    for module in (loop, validation):
        original = module.vae_loss

        def recorded(*args, _loss=original, **kwargs):
            terms = _loss(*args, **kwargs)
            losses.extend(terms.values())
            return terms

        monkeypatch.setattr(module, "vae_loss", recorded)
    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            result = loop.train_model(config(prepared_dir, tmp_path / "m", property_head=["qed"]))
    finally:
        handle.remove()
    assert result.progress.finished
    assert {what for kind, what in seen if kind == "gru"} == {
        "in torch.float32, out torch.float32, autocast False"}
    assert seen["linear", "torch.bfloat16"] > 0
    assert losses and all(t.dtype == torch.float32 and torch.isfinite(t) for t in losses)
    history = pd.read_csv(tmp_path / "m" / "history.csv")
    assert np.isfinite(history[["train_loss", "val_loss", "val_recon", "val_kl"]]).all(None)


def test_a_batch_and_its_loss_on_the_meta_device(prepared_dir: Path, tmp_path: Path) -> None:
    """Meta tensors have no values, so any read of one on the host (``.item()``, a mask, a
    sort on the device) fails here: building a batch, the loss, backward and the optimizer
    step read none."""
    run = loop._start(config(prepared_dir, tmp_path / "m"), Tracker(),
                      Distributed(0, 1, torch.device("meta")))
    assert run.model.device.type == "meta" and run.train_tokens.tokens.is_meta
    batch = run.train_tokens.batch(list(range(8)))
    assert batch.tokens.is_meta and not batch.lengths.is_meta
    terms = loop._train_step(run, batch, 0.5)
    assert all(t.is_meta and t.dtype == torch.float32 for t in terms.values())
    assert all(p.is_meta for p in run.model.parameters())


def test_resume_with_more_saved_cuda_generators_than_devices(
        prepared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint from a host with 3 GPUs resumed on one with 1: device 0 gets state 0, the
    others are left alone, and the run continues as an uninterrupted one."""
    whole = loop.train_model(config(prepared_dir, tmp_path / "whole", max_steps=6))
    loop.train_model(config(prepared_dir, tmp_path / "m", max_steps=3))
    checkpoint = load_checkpoint(tmp_path / "m")
    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(3)]
    checkpoint["rng"][0]["cuda"] = saved
    save_checkpoint({k: v for k, v in checkpoint.items() if k != "format"}, tmp_path / "m")

    restored: list[tuple[int, torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: restored.append((device, state)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [saved[0]])
    resumed = loop.train_model(config(prepared_dir, tmp_path / "m", max_steps=6, resume=True))
    assert [(d, s.tolist()) for d, s in restored] == [(0, saved[0].tolist())]
    assert resumed.progress.step == whole.progress.step == 6
    weights = [load_checkpoint(tmp_path / name)["model"]["state_dict"] for name in ("m", "whole")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[1])


def test_restore_cuda_rng_skips_states_of_absent_devices(
        monkeypatch: pytest.MonkeyPatch) -> None:
    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: restored.append(device))
    restore_cuda_rng([torch.zeros(16, dtype=torch.uint8)] * 4)
    assert restored == [0, 1]
    restored.clear()
    restore_cuda_rng([torch.zeros(16, dtype=torch.uint8)])
    assert restored == [0]
