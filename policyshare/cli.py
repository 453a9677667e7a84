"""The ``policyshare`` command.

Every subcommand that writes follows one convention: ``--run-dir DIR`` chooses the run folder,
``--seed``/``--seeds`` the seeds, and the default folder is ``runs/<command>/<env>…__s<seed>``.
A user error (bad flag, unknown env id, bad config, missing or corrupt checkpoint, mismatched
shapes, a run folder that would be overwritten) prints one line on stderr and exits with
status 2; nothing is overwritten. Ctrl-C outside a training loop prints one line and exits with
status 130 (training loops save a checkpoint first and exit with status 2). The library only logs;
``-q``/``-v``, before or after the subcommand, set the console's level once here
(:mod:`policyshare.console`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from policyshare.console import console_logging
from policyshare.errors import UserError

Handler = Callable[[argparse.Namespace], int]

log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and exit status 2, and which takes the
    verbosity flags ``-q``/``-v`` (:func:`_add_verbosity`) before or after any subcommand."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_verbosity(self)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_verbosity(p: argparse.ArgumentParser) -> None:
    """``-q``/``--quiet`` and ``-v``/``--verbose``: the console's log level (:mod:`policyshare.console`).

    Unset flags leave ``log_level`` absent (``SUPPRESS``), so a flag given before the subcommand
    is not undone by the subcommand's parser.
    """
    group = p.add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                       default=argparse.SUPPRESS,
                       help="only warnings and errors: no progress lines, progress bars or summaries")
    group.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                       default=argparse.SUPPRESS,
                       help="also debug lines, and the progress of the runs a command starts inside itself")


def _add_run_options(p: argparse.ArgumentParser, seeds: bool = False) -> None:
    p.add_argument("--run-dir", default=None, metavar="DIR",
                   help="run folder (default: under ./runs/, named from the command, env, method and "
                   "seed; see runs/README.md)")
    if seeds:
        p.add_argument("--seeds", nargs="+", default=["0"], metavar="S",
                       help="seeds: integers or ranges such as 0-4 (default: 0)")
    else:
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the unfinished run in the run folder from its last checkpoint")


# --------------------------------------------------------------------------------------------
# train


def _train_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a policy for one env from a config",
        description="Train one policy (PPO, A2C or DQN from stable-baselines3) on a shared-trunk "
        "network for one Gymnasium env. Writes a run folder: config.yaml, meta.json, tb/ "
        "(TensorBoard), checkpoints/, model.zip (loads with plain SB3), trunk.safetensors "
        "(policyshare.load_trunk) and metrics.json.")
    p.add_argument("--env", required=True, metavar="ID", help="Gymnasium id, e.g. MinAtar/Breakout-v1")
    p.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "dqn"], help="algorithm (default: ppo)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="config keyed by env id with a default: entry (default: configs/<algo>.yaml)")
    p.add_argument("--timesteps", type=int, default=None, metavar="N",
                   help="env steps to train, summed over envs (default: from the config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set hyperparams.learning_rate=1e-4 (repeatable)")
    p.add_argument("--init-trunk", default=None, metavar="FILE",
                   help="initialise the trunk from a trunk file (trunk.safetensors, or a distilled "
                   "student.safetensors: its trunk); heads start fresh")
    p.add_argument("--freeze-trunk", action="store_true", help="keep the initialised trunk fixed")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_train)


def _cmd_train(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.train import train

    train(a.env, a.algo, config=a.config, timesteps=a.timesteps, seed=a.seed, run_dir=a.run_dir,
          overrides=parse_overrides(a.overrides), resume=a.resume, init_trunk=a.init_trunk,
          freeze_trunk=a.freeze_trunk)
    return 0


# --------------------------------------------------------------------------------------------
# evaluate


def _evaluate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a run folder or checkpoint",
        description="Evaluate a checkpoint (a run folder, an SB3 zip, a progressive network or "
        "a student) with greedy actions: prints mean ± std return over N episodes next to the "
        "random-policy return on the same env and seeds.")
    p.add_argument("path", metavar="PATH", help="run folder or checkpoint file")
    p.add_argument("--env", "--task", dest="env", default=None, metavar="ID",
                   help="env to evaluate in (required for multi-task checkpoints)")
    p.add_argument("--episodes", type=int, default=20, metavar="N", help="episodes (default: 20)")
    p.add_argument("--seed", type=int, default=10_000, help="evaluation seed (default: 10000)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--video", default=None, metavar="FILE.gif",
                   help="also write one episode as a GIF (its folder must exist)")
    _add_safe_option(p, "the checkpoint")
    p.set_defaults(handler=_cmd_evaluate)


def _add_safe_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--safe``: load SB3 zips (``what``) without unpickling anything."""
    p.add_argument("--safe", action="store_true",
                   help=f"never unpickle {what}: rebuild an SB3 zip's network from its policyshare.json "
                   "and load only its weights (for checkpoints from untrusted sources; plain SB3 zips "
                   "are refused)")


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from policyshare.evaluate import check_video_path, evaluate, random_return, record_video
    from policyshare.policies import load_policy

    if a.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {a.episodes}")
    if a.video:
        check_video_path(a.video)  # before the evaluation, not after it
    agent, env_id, _ = load_policy(a.path, a.env, safe=a.safe)
    result = evaluate(agent, env_id, a.episodes, a.seed)
    rand = random_return(env_id, a.episodes, a.seed)
    out: dict[str, Any] = {"path": str(a.path), "env_id": env_id, "episodes": a.episodes,
                           "seed": a.seed, "mean_return": result.mean, "std_return": result.std,
                           "random_mean_return": rand.mean, "random_std_return": rand.std}
    if a.video:
        video, ret = record_video(agent, env_id, a.video, a.seed)
        out["video"] = str(video)
        out["video_return"] = ret
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{env_id}: {result.mean:.2f} ± {result.std:.2f} over {a.episodes} episodes "
              f"(random policy: {rand.mean:.2f} ± {rand.std:.2f})")
        if a.video:
            print(f"video: {out['video']} (return {out['video_return']:.1f})")
    return 0


# --------------------------------------------------------------------------------------------
# distill


def _distill_parser(sub: Any) -> None:
    p = sub.add_parser(
        "distill", help="distill several experts into one shared-trunk student (Actor-Mimic)",
        description="Distill SB3 experts, one per task of a suite, into one student with a shared "
        "trunk (Actor-Mimic, Parisotto et al. 2016; Policy Distillation, Rusu et al. 2015). The "
        "student acts epsilon-greedily in every task; each update mixes minibatches of all tasks. "
        "Writes a run folder: tb/ (distill/<task>/... tags), checkpoints/, student.safetensors "
        "(policyshare evaluate STUDENT --task ID), trunk.safetensors (policyshare transfer), "
        "evaluation/ and metrics.json (per-task returns, expert-normalised IQM, parameter counts).")
    p.add_argument("--teachers", nargs="+", required=True, metavar="CKPT",
                   help="one SB3 checkpoint (or run folder) per task; TASK=PATH for plain SB3 files")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="distillation config (default: configs/actor_mimic.yaml)")
    p.add_argument("--steps", type=int, default=None, metavar="N",
                   help="env steps per task the student acts for (default: from the config)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set tau=0.5 (repeatable)")
    _add_safe_option(p, "teachers")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_distill)


def _cmd_distill(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.distill import distill

    distill(a.teachers, config=a.config, steps=a.steps, seed=a.seed, run_dir=a.run_dir,
            overrides=parse_overrides(a.overrides), resume=a.resume, safe=a.safe)
    return 0


# --------------------------------------------------------------------------------------------
# multitask (policyshare/multitask/)


def _multitask_parser(sub: Any) -> None:
    p = sub.add_parser(
        "multitask", help="train one shared-trunk network by PPO on several games at once",
        description="Multi-task PPO from scratch (sharing without distillation): one network, one trunk and "
        "one optimizer trained by SB3's PPO on all the tasks' envs side by side, observations aligned by the "
        "suite's input alignment and tagged with the task, actions in the suite's common action space with "
        "each task's mask. Writes a run folder: tb/ (SB3's tags and multitask/<task>/... per task), "
        "checkpoints/, model.zip, trunk.safetensors (policyshare transfer --trunk, train --init-trunk), "
        "evaluations.json and metrics.json (per-task returns, random and expert returns, expert-normalised "
        "scores and their IQM).")
    p.add_argument("--tasks", nargs="+", required=True, metavar="ID",
                   help="Gymnasium ids of one suite, at least two, e.g. MinAtar/Breakout-v1 MinAtar/Asterix-v1")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="multi-task config (default: configs/multitask.yaml)")
    p.add_argument("--timesteps", type=int, default=None, metavar="T",
                   help="env steps over all tasks together (default: the config's; null there: the tasks' "
                   "expert budgets in configs/ppo.yaml summed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set n_envs=4 or --set trunk.alignment=stem (repeatable)")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_multitask)


def _cmd_multitask(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.multitask import multitask

    multitask(a.tasks, config=a.config, timesteps=a.timesteps, seed=a.seed, run_dir=a.run_dir,
              overrides=parse_overrides(a.overrides), resume=a.resume)
    return 0


# --------------------------------------------------------------------------------------------
# transfer


def _transfer_parser(sub: Any) -> None:
    p = sub.add_parser(
        "transfer", help="train on a new env from a saved trunk, against scratch",
        description="For each seed, train one agent whose trunk starts from a trunk file (fresh "
        "heads; fine-tuned, or frozen with --freeze-trunk) and one from scratch, with the same "
        "config, seed and evaluation steps. Prints transfer % (area under the learning curve "
        "relative to scratch) per seed with its IQM and bootstrap interval, and the final "
        "returns; writes curves.png, summary.json and report.md; TensorBoard overlays the runs.")
    p.add_argument("--trunk", required=True, metavar="TRUNK_FILE",
                   help="a trunk file (trunk.safetensors of a distill, train or progressive run), or a "
                   "distilled student.safetensors (its trunk is taken)")
    p.add_argument("--env", required=True, metavar="ID", help="target Gymnasium id, e.g. MinAtar/Seaquest-v1")
    p.add_argument("--algo", default="ppo", choices=["ppo", "a2c", "dqn"], help="algorithm (default: ppo)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="config keyed by env id with a default: entry (default: configs/<algo>.yaml)")
    p.add_argument("--timesteps", type=int, default=None, metavar="N",
                   help="env steps per run, summed over envs (default: from the config)")
    p.add_argument("--freeze-trunk", action="store_true", help="keep the loaded trunk fixed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key of every run, e.g. --set eval.freq=25000 (repeatable)")
    _add_run_options(p, seeds=True)
    p.set_defaults(handler=_cmd_transfer)


def _cmd_transfer(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.train import parse_seeds
    from policyshare.transfer import transfer

    transfer(a.trunk, a.env, algo=a.algo, config=a.config, timesteps=a.timesteps,
             seeds=parse_seeds(a.seeds), freeze_trunk=a.freeze_trunk, run_dir=a.run_dir,
             overrides=parse_overrides(a.overrides), resume=a.resume)
    return 0


# --------------------------------------------------------------------------------------------
# vision (policyshare/vision/cli.py)


def _vision_parser(sub: Any) -> None:
    from policyshare.vision.cli import add_vision_parser

    add_vision_parser(sub, _Parser)


# --------------------------------------------------------------------------------------------
# progressive


def _progressive_parser(sub: Any) -> None:
    from policyshare.methods import PROGRESSIVE_CONTROLS

    p = sub.add_parser(
        "progressive", help="grow a progressive network over tasks and measure transfer",
        description="Progressive neural networks (Rusu et al. 2016): one column per task, earlier "
        "columns frozen, lateral adapters (Eq. 2). Trains column 1 on the first task (or takes it "
        "from --init-from), each next column on the next task, then the controls on the target "
        "(last) task with the same seeds: scratch (baseline 1), finetune (baseline 3), "
        "random_column (baseline 4). Writes per-seed run folders, network.safetensors (policyshare "
        "evaluate DIR/s<seed> --task ID), column trunk files, and at the root metrics.json "
        "(transfer % with bootstrap intervals), report.md, curves.png and the Average Fisher "
        "Sensitivity table and heat map.")
    p.add_argument("--tasks", nargs="+", required=True, metavar="ID",
                   help="Gymnasium ids, source tasks first, the target last (at least two)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="experiment config (default: configs/progressive.yaml)")
    p.add_argument("--algo", default=None, choices=["ppo", "a2c"], help="algorithm (default: the config's)")
    p.add_argument("--timesteps", type=int, default=None, metavar="N",
                   help="env steps per column and per control run (default: the config's)")
    p.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                   help="column 1 from a `policyshare train` run folder or model.zip of the first task")
    p.add_argument("--controls", nargs="+", default=None, metavar="NAME",
                   choices=[*PROGRESSIVE_CONTROLS, "none"],
                   help="controls on the target: scratch finetune random_column, or none "
                   "(default: the config's, all on)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set adapter.alpha_init=0.1 or "
                   "--set train.eval.freq=5000 (repeatable)")
    _add_safe_option(p, "--init-from")
    _add_run_options(p, seeds=True)
    p.set_defaults(handler=_cmd_progressive)


def _cmd_progressive(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.progressive import run_progressive
    from policyshare.train import parse_seeds

    controls = None if a.controls is None else [c for c in a.controls if c != "none"]
    run_progressive(a.tasks, config=a.config, algo=a.algo, timesteps=a.timesteps,
                    seeds=parse_seeds(a.seeds), run_dir=a.run_dir, init_from=a.init_from,
                    controls=controls, overrides=parse_overrides(a.overrides), resume=a.resume, safe=a.safe)
    return 0


# --------------------------------------------------------------------------------------------

#: Subcommand parser builders. Other modules' commands are added here as they land.
def _zoo_parser(sub: Any) -> None:
    p = sub.add_parser(
        "zoo", help="list or extend the shipped expert checkpoints",
        description="The zoo: expert checkpoints for the MinAtar games, several training seeds each, shipped "
        "with the package, each with its provenance (config, seed, command, versions, git commit, evaluation "
        "score and interval). Load one in Python with policyshare.zoo.load('MinAtar/Breakout-v1', seed=0); "
        "name one as a trunk with zoo:MinAtar/Breakout-v1 (seed 0) or zoo:MinAtar/Breakout-v1@s1. "
        "`make zoo` trains and adds the whole zoo.")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", parser_class=_Parser, required=True)
    zsub.add_parser("list", help="print each expert with its score and 95%% interval, then each game's mean "
                    "over seeds against its published target")
    add = zsub.add_parser("add", help="copy finished policyshare train runs into the zoo as <env>__s<seed>.zip")
    add.add_argument("runs", nargs="+", metavar="RUN_DIR", help="finished train run folders")
    add.add_argument("--allow-dirty", action="store_true",
                     help="add runs trained from a tree with uncommitted changes (or outside a git checkout); "
                     "refused otherwise, since the zoo's provenance should name one clean commit")
    p.set_defaults(handler=_cmd_zoo)


def _cmd_zoo(a: argparse.Namespace) -> int:
    from policyshare import zoo

    if a.zoo_command == "add":
        for run in a.runs:  # every run checked before any is added
            zoo.check_run(run, a.allow_dirty)
        for run in a.runs:
            print(zoo.describe(zoo.add_expert(run, allow_dirty=a.allow_dirty)))
        return 0
    experts = zoo.list_experts()
    if not experts:
        raise UserError("the zoo is empty; add finished train runs with policyshare zoo add RUN_DIR")
    print(f"{'env id':28s} {'seed':4s} {'return':>8s} [95% interval]  final evaluation, training   "
          f"(zoo: {zoo.ZOO_DIR})")
    for e in experts:
        print(zoo.describe(e))
    print()
    print(f"{'per game':28s} {'mean over seeds':>8s} [95% interval of the mean over seeds]  published target")
    for s in zoo.summarise(experts):
        print(zoo.describe_game(s))
    return 0


def _run_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run", help="run the whole sharing experiment from one config",
        description="Run the end-to-end sharing experiment: experts per source game and upstream seed (zoo, "
        "earlier runs or trained), Actor-Mimic students and multi-task PPO networks, transfer to the held-out "
        "games (scratch; per alignment: fine-tuned and frozen trunks of every source expert, student, "
        "single-teacher student, multi-task trunk, progressive column, random-frozen-column control) over the "
        "seeds, the vision comparison, and report.md + summary.json + plots. Finished stages are not redone: "
        "run the same command again to continue after an interruption. --plan checks the config and prints "
        "the jobs, env steps and estimated wall time without running anything.")
    p.add_argument("config", metavar="CONFIG", help="experiment YAML, e.g. configs/quickstart.yaml")
    p.add_argument("--run-dir", default=None, metavar="DIR", help="experiment folder (default: runs/<name>)")
    p.add_argument("--only", default=None, metavar="STAGE",
                   help="run only this stage: experts, distill, multitask, transfer, vision or report")
    p.add_argument("--force", action="append", default=[], metavar="STAGE",
                   help="redo this stage and every later one (their outputs are moved aside, not deleted)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set transfer.timesteps=100000 (repeatable)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run up to N independent jobs of a stage at once, one process each (default: 1); "
                   "Ctrl-C starts no further job, stops the running ones at a checkpoint and exits with "
                   "status 130 naming the unfinished jobs")
    p.add_argument("--plan", action="store_true",
                   help="check the config (every refusal, exit 2) and print the jobs of every stage, their env "
                   "steps and the estimated wall time on --jobs N cores; run and write nothing")
    p.set_defaults(handler=_cmd_run)


def _cmd_run(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.experiment import describe_plan, local_pool, run_experiment

    if a.jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {a.jobs}")
    if a.plan:
        print(describe_plan(a.config, parse_overrides(a.overrides), cores=a.jobs))
        return 0
    run_experiment(a.config, run_dir=a.run_dir, only=a.only, force=a.force,
                   overrides=parse_overrides(a.overrides), executor=local_pool(a.jobs))
    return 0


def _report_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="rebuild an experiment's report from its run folders",
        description="Rebuild report.md, summary.json and the plots of an experiment folder (written by "
        "policyshare run or sweep) from its run folders alone.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the experiment folder")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(a: argparse.Namespace) -> int:
    from pathlib import Path

    from policyshare.experiment.report import build_report

    build_report(a.run_dir)
    print(f"report: {Path(a.run_dir) / 'report.md'}")
    return 0


def _sweep_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sweep", help="run an experiment's jobs as Ray Tune trials",
        description="Run the experiment's independent jobs (method x task x seed) as Ray Tune trials, stage by "
        "stage: a local Ray by default, an existing cluster with --address (every node must see the "
        "experiment folder). --backend local runs them one after another without Ray. Results land in the "
        "same layout as policyshare run; policyshare report works on either.")
    p.add_argument("config", metavar="CONFIG", help="experiment YAML")
    p.add_argument("--seeds", nargs="+", default=None, metavar="S", help="seeds, e.g. 0-9 (default: the config's)")
    p.add_argument("--address", default=None, metavar="ADDR", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--backend", default="ray", choices=["ray", "local"], help="ray (default) or local")
    p.add_argument("--max-failures", type=int, default=None, metavar="N",
                   help="retries of a trial whose worker died (a lost node, a killed process); it resumes from its "
                   "run folder's last checkpoint; -1: no limit (default: 3; Ray Tune's FailureConfig)")
    p.add_argument("--run-dir", default=None, metavar="DIR", help="experiment folder (default: runs/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable)")
    p.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.experiment.sweep import sweep
    from policyshare.train import parse_seeds

    sweep(a.config, seeds=parse_seeds(a.seeds) if a.seeds else None, address=a.address, backend=a.backend,
          run_dir=a.run_dir, overrides=parse_overrides(a.overrides), max_failures=a.max_failures)
    return 0


def _tune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune", help="search an algorithm's hyper-parameters on one env (Ray Tune + Optuna)",
        description="Search hyper-parameters with Ray Tune: Optuna's TPE sampler proposes each trial from a "
        "search space (configs/tune.yaml), each trial is a policyshare train run folder under "
        "runs/tune/<env>__<algo>/trial_<k>/, its periodic evaluations (eval/mean_reward) are reported to Ray "
        "Tune, and ASHA stops poor trials early. Runs on a local Ray, or a cluster with --address (every node "
        "must see the folder). Prints the best finished trial's config as YAML for configs/<algo>.yaml on "
        "stdout (progress goes to stderr); also written to best.yaml, with every trial in summary.json.")
    p.add_argument("--env", required=True, metavar="ID", help="Gymnasium id, e.g. MinAtar/Breakout-v1")
    p.add_argument("--algo", default="ppo", metavar="ALGO",
                   help="algorithm with a search space in the space file: ppo (default) or dqn")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="trials (Optuna samples) to run (default: the space file's tuner.trials)")
    p.add_argument("--timesteps", type=int, default=None, metavar="T",
                   help="env steps per trial (default: the space file's tuner.timesteps)")
    p.add_argument("--address", default=None, metavar="ADDR", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--space", default=None, metavar="YAML",
                   help="search spaces and tuner settings (default: configs/tune.yaml)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="train config the trials override, keyed by env id (default: configs/<algo>.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fix a train-config key for every trial, e.g. --set vec_env=batched (it leaves the "
                   "search; repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial and of the sampler (default: 0)")
    p.add_argument("--run-dir", default=None, metavar="DIR",
                   help="tune folder, which must not exist yet (default: runs/tune/<env>__<algo>)")
    p.set_defaults(handler=_cmd_tune, info_to_stderr=True)  # stdout carries the YAML alone


def _cmd_tune(a: argparse.Namespace) -> int:
    from policyshare.config import parse_overrides
    from policyshare.tune import tune

    result = tune(a.env, a.algo, trials=a.trials, timesteps=a.timesteps, address=a.address, space=a.space,
                  config=a.config, overrides=parse_overrides(a.overrides), seed=a.seed, run_dir=a.run_dir)
    print(result.best_yaml, end="", flush=True)
    log.info(f"best: {result.best.name}; every trial: {result.root / 'summary.json'}; this config: "
             f"{result.root / 'best.yaml'}")
    return 0


COMMANDS: list[Callable[[Any], None]] = [_train_parser, _evaluate_parser, _progressive_parser, _distill_parser,
                                          _multitask_parser, _transfer_parser, _vision_parser, _zoo_parser,
                                          _run_parser,
                                          _report_parser, _sweep_parser, _tune_parser]


def build_parser() -> argparse.ArgumentParser:
    """The ``policyshare`` argument parser with every subcommand."""
    parser = _Parser(
        prog="policyshare",
        description="Does sharing the lower conv layers across tasks pay off? Train shared-trunk "
        "policies (SB3), grow progressive networks, distill experts into an Actor-Mimic student, "
        "transfer trunks to new games, reuse them for vision, and run the whole experiment.",
        epilog="Every command that writes takes --run-dir DIR and --seed/--seeds; bad input exits "
        "with status 2 and one line on stderr. `policyshare COMMAND --help` for each command.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def _version() -> str:
    from policyshare import __version__

    return f"policyshare {__version__}"


def _limit_threads() -> None:
    """One torch thread unless ``POLICYSHARE_TORCH_THREADS`` says otherwise.

    The networks here are small: with several threads a 10x10 convolution at batch 1 took
    27 ms instead of 0.08 ms on a loaded 2-core machine (threads spin waiting for each other).
    Training runs set their own count from the config (``torch_threads``).
    """
    import os

    import torch

    torch.set_num_threads(max(1, int(os.environ.get("POLICYSHARE_TORCH_THREADS", "1"))))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    _limit_threads()
    # stdout of `tune` and of `--json` is data: their progress lines go to stderr.
    info_to_stderr = bool(getattr(args, "info_to_stderr", False) or getattr(args, "json", False))
    try:
        with console_logging(getattr(args, "log_level", logging.INFO), info_to_stderr):
            return handler(args)
    except UserError as e:
        from policyshare.errors import Interrupted

        kind = "" if isinstance(e, Interrupted) else "error: "
        print(f"policyshare {args.command}: {kind}{e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # The reader of stdout left (`policyshare zoo list | head -1`): stop quietly, as Unix tools
        # do, with Python's status for a broken pipe, and keep the interpreter from reporting it again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        # Commands that train save on Ctrl-C themselves; this covers the other moments.
        hint = "; rerun the same command with --resume to continue" if hasattr(args, "resume") else ""
        print(f"policyshare {args.command}: interrupted (Ctrl-C){hint}", file=sys.stderr)
        return 130
