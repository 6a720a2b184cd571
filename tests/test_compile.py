"""torch.compile in a sweep: several runs in one process stay compiled (no fallback to eager, no
recompiles past dynamo's limit, no graph breaks), the chunked head included. The aot_eager backend
traces the same graphs as inductor without generating kernels, so the test stays short."""
import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import model as M
import train
from train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def test_several_runs_in_one_process_stay_compiled(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ICGPT_COMPILE_BACKEND", "aot_eager")
    # a budget of 12 positions x 4 rows x 65 logits: every loss is 3 checkpointed chunks, the path the
    # paper's vocabulary takes on a GPU
    monkeypatch.setattr(M, "LOGIT_CHUNK_ELEMENTS", 12 * 4 * 65)
    # a run needs 2 graphs: without a reset between runs the third run would pass 4 (8 is dynamo's default)
    config = {"recompile_limit": 4}
    if hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"):
        config["fail_on_recompile_limit_hit"] = True         # hitting the limit raises instead of going eager
    counters.clear()
    with torch._dynamo.config.patch(**config):
        for i, (name, n_val) in enumerate([("tiny-67k", 33 * 10), ("tiny-120k", 33 * 7), ("tiny-240k", 33 * 9)]):
            before = sum(counters["stats"].values()), counters["stats"]["unique_graphs"]
            # val sets of 10, 7, 9 windows at micro-batch 4: the last eval batch is 2, 3, 1 rows
            s = train.train(TrainConfig(dataset=tiny_data, out_dir=str(tmp_path / f"r{i}"), model=name, seq_len=32,
                                        train_tokens=1024, val_tokens=n_val + 1, batch_size=8, micro_batch=4,
                                        epochs=1, evals=1, compile="true"), quiet=True)
            assert s["compile"] is True
            graphs = counters["stats"]["unique_graphs"] - before[1]
            # training and no-grad evaluation; an unpadded last eval batch would add a dynamic-shape graph
            assert graphs == 2, (name, graphs, dict(counters["stats"]))
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert not any("recompile_limit" in k or "cache_size" in k for k in counters["frames"]), dict(counters["frames"])
