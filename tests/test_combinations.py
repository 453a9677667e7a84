"""Every supported combination runs: algorithm × activation × input alignment × how the trunk starts.

PPO, A2C and DQN; ReLU, TRec and TLin; ``pad`` and ``stem``; from scratch, fine-tuned from a trunk
file (``--init-trunk``) and frozen (``--init-trunk --freeze-trunk``) — each a real
``policyshare train`` on MinAtar (in-process, through the command line's ``main``) at a budget of
128 env steps, ending in a finished run folder whose trunk is what was asked for. One source trunk
per (activation, alignment) is trained once for the module. The ``transfer`` command runs for
every algorithm; what is not supported is refused up front with one line and exit status 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from policyshare.algos import features_extractors
from policyshare.checkpoints import load_trunk
from policyshare.cli import main
from policyshare.sb3_files import load_sb3

SOURCE = "MinAtar/Breakout-v1"
TARGET = "MinAtar/Asterix-v1"
#: A few updates of each algorithm within 128 env steps.
ALGO_SETS = {
    "ppo": ["--set", "n_envs=2", "--set", "hyperparams.n_steps=32", "--set", "hyperparams.batch_size=32",
            "--set", "hyperparams.n_epochs=2"],
    "a2c": ["--set", "n_envs=2", "--set", "hyperparams.n_steps=8"],
    "dqn": ["--set", "n_envs=1", "--set", "hyperparams.learning_starts=32", "--set", "hyperparams.buffer_size=500",
            "--set", "hyperparams.train_freq=4"],
}
QUICK = ["--timesteps", "128", "--set", "eval.freq=0", "--set", "eval.final_episodes=1",
         "--set", "eval.random_episodes=1", "--set", "checkpoint_freq=0", "--quiet"]
ACTIVATIONS = ("relu", "trec", "tlin")
ALIGNMENTS = ("pad", "stem")
STARTS = ("scratch", "finetune", "frozen")

SourceTrunk = Callable[[str, str], Path]


def trunk_args(activation: str, alignment: str) -> list[str]:
    return ["--set", f"trunk.activation={activation}", "--set", f"trunk.alignment={alignment}"]


@pytest.fixture(scope="module")
def source_trunk(tmp_path_factory: pytest.TempPathFactory) -> SourceTrunk:
    """``(activation, alignment) -> trunk.safetensors`` of a 128-step PPO run on Breakout, trained
    on first use and shared by the module."""
    root = tmp_path_factory.mktemp("sources")
    made: dict[tuple[str, str], Path] = {}

    def get(activation: str, alignment: str) -> Path:
        if (activation, alignment) not in made:
            run = root / f"{activation}_{alignment}"
            assert main(["train", "--env", SOURCE, "--run-dir", str(run), *ALGO_SETS["ppo"], *QUICK,
                         *trunk_args(activation, alignment)]) == 0
            made[activation, alignment] = run / "trunk.safetensors"
        return made[activation, alignment]

    return get


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("start", STARTS)
@pytest.mark.parametrize("alignment", ALIGNMENTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("algo", sorted(ALGO_SETS))
def test_combination_trains(algo: str, activation: str, alignment: str, start: str, source_trunk: SourceTrunk,
                            tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["train", "--env", TARGET, "--algo", algo, "--run-dir", str(run), *ALGO_SETS[algo], *QUICK,
            *trunk_args(activation, alignment)]
    source = source_trunk(activation, alignment) if start != "scratch" else None
    if source is not None:
        args += ["--init-trunk", str(source)]
    if start == "frozen":
        args.append("--freeze-trunk")
    assert main(args) == 0

    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["algo"], metrics["timesteps"], metrics["freeze_trunk"]) == (algo, 128, start == "frozen")
    assert metrics["init_trunk"] == (str(source) if source else None)
    trunk = load_trunk(run / "trunk.safetensors")
    assert (trunk.spec.activation, trunk.header["alignment"]["mode"]) == (activation, alignment)
    model, _ = load_sb3(run / "model.zip")
    extractors = features_extractors(model)
    assert len(extractors) == (2 if algo == "dqn" else 1)  # DQN: online and target Q-networks
    assert all(ex.alignment.mode == alignment for ex in extractors)
    if start == "frozen":  # trained, yet bit for bit the source's trunk in every extractor
        assert all(same_state(ex.trunk, load_trunk(source)) for ex in extractors)


@pytest.mark.parametrize("algo", sorted(ALGO_SETS))
def test_transfer_command_runs_for_every_algorithm(algo: str, source_trunk: SourceTrunk, tmp_path: Path) -> None:
    root = tmp_path / "transfer"
    assert main(["transfer", "--trunk", str(source_trunk("relu", "pad")), "--env", TARGET, "--algo", algo,
                 "--freeze-trunk", "--run-dir", str(root), *ALGO_SETS[algo], *QUICK,
                 "--set", "eval.freq=64", "--set", "eval.episodes=1"]) == 0
    summary = json.loads((root / "summary.json").read_text())
    assert summary["algo"] == algo and summary["method"] == "frozen"
    for name in ("frozen__s0", "scratch__s0"):
        assert json.loads((root / name / "evaluations.json").read_text())["timesteps"] == [0, 64, 128]


@pytest.mark.parametrize(("args", "expected"), [
    (["--freeze-trunk"], "--freeze-trunk needs a trunk to freeze"),
    (["--init-trunk", "SOURCE", *trunk_args("relu", "stem")], "trained with 'pad' input alignment"),
    (["--init-trunk", "SOURCE", *trunk_args("trec", "pad")], "set trunk.activation: relu to match"),
    (["--init-trunk", "TREC", *trunk_args("trec", "pad"), "--set", "trunk.theta=1.0"],
     "set trunk.theta: 0.5 to match"),
    (["--set", "trunk.spec=nature"], "too small"),
])
def test_unsupported_combinations_are_refused_up_front(args: list[str], expected: str, source_trunk: SourceTrunk,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = {"SOURCE": str(source_trunk("relu", "pad")), "TREC": str(source_trunk("trec", "pad"))}
    args = [files.get(a, a) for a in args]
    for algo in ALGO_SETS:
        rc = main(["train", "--env", TARGET, "--algo", algo, "--run-dir", str(tmp_path / "r"),
                   *ALGO_SETS[algo], *QUICK, *args])
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and expected in err, (algo, err)
        assert not (tmp_path / "r").exists()
