"""``policyshare distill``: train a student, export it and its trunk, evaluate it, write metrics.

:func:`distill` runs the stages of one run folder (train → ``student.safetensors`` and
``trunk.safetensors`` → per-task evaluation → ``metrics.json``); a resumed run skips the stages
it finished and continues training from its latest checkpoint. :func:`evaluate_task` compares
student, teacher and random policy on one task; :func:`format_table` prints the result.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policyshare.checkpoints import save_trunk
from policyshare.config import check_same_settings, to_dict, with_changes
from policyshare.distill.config import DistillConfig, load_distill_config, method_name
from policyshare.distill.student import Student, StudentAgent, build_student, load_student, save_student, task_info
from policyshare.distill.teachers import Teacher, load_teachers
from policyshare.distill.trainer import train_student
from policyshare.envs import check_vec_env
from policyshare.errors import UserError
from policyshare.evaluate import EVAL_SEED_OFFSET, EvalResult, evaluate, random_return
from policyshare.io import atomic_write_json, read_json
from policyshare.metrics import expert_normalised, format_interval, format_number, iqm_intervals
from policyshare.runs import RunFolder, default_run_dir, slug

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Final evaluation of one task


class _AgreementProbe:
    """Acts as the student (greedy) and counts how often the teacher's greedy action agrees."""

    def __init__(self, agent: StudentAgent, teacher: Teacher) -> None:
        self.agent = agent
        self.teacher = teacher
        self.same = 0
        self.total = 0

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        actions, _ = self.agent.predict(observation, state, episode_start, deterministic)
        device = next(self.agent.student.parameters()).device
        t_scores, _ = self.teacher.outputs(torch.as_tensor(np.asarray(observation), device=device))
        t_actions = t_scores.argmax(-1).cpu().numpy()
        self.same += int((np.atleast_1d(actions) == t_actions).sum())
        self.total += len(t_actions)
        return actions, None



def _result_dict(r: EvalResult) -> dict[str, Any]:
    return {"mean": r.mean, "std": r.std, "returns": r.returns, "lengths": r.lengths}


def evaluate_task(student: Student, teacher: Teacher, k: int, episodes: int, random_episodes: int,
                  seed: int) -> dict[str, Any]:
    """Student, teacher and random returns on task ``k`` (same evaluation seeds), and the
    fraction of the student's visited states where its greedy action equals the teacher's.

    Units: returns are undiscounted episode returns; ``agreement_states`` counts env steps.
    """
    probe = _AgreementProbe(StudentAgent(student, k), teacher)
    s = evaluate(probe, teacher.task, episodes, seed)
    t = evaluate(teacher.model, teacher.task, episodes, seed)
    r = random_return(teacher.task, random_episodes, seed)
    return {"task": teacher.task, "episodes": episodes, "student": _result_dict(s),
            "teacher": _result_dict(t), "random": _result_dict(r),
            "expert_normalised": expert_normalised(s.mean, r.mean, t.mean),
            "agreement": probe.same / max(probe.total, 1), "agreement_states": probe.total}



# --------------------------------------------------------------------------------------------
# The command


@dataclass
class DistillResult:
    """What :func:`distill` produced."""

    run_dir: Path
    student_path: Path
    trunk_path: Path
    metrics: dict[str, Any]
    student: Student


def distill(teachers: Sequence[str], *, config: str | Path | None = None, steps: int | None = None,
            seed: int = 0, run_dir: str | Path | None = None,
            overrides: Mapping[str, Any] | None = None, resume: bool = False,
            safe: bool = False) -> DistillResult:
    """Distill teachers into one student and write a complete run folder.

    Stages (a resumed run skips the finished ones): train the student
    (:func:`train_student`, checkpointed) → ``student.safetensors`` and ``trunk.safetensors``
    → per task, evaluate student, teacher and random policy (``evaluation/<task>.json``) →
    ``metrics.json``: per-task returns, expert-normalised score
    ``(student − random) / (teacher − random)``, its interquartile mean over tasks with a
    stratified bootstrap interval (tasks resampled; Agarwal et al. 2021), and the parameter
    counts of the student and of all teachers together. Same-seed reruns write the same
    ``metrics.json`` byte for byte (CPU); wall-clock figures go to ``timing.json``.

    Args:
        teachers: ``PATH`` or ``TASK=PATH`` per teacher (see :func:`load_teachers`).
        config: distillation config (default ``configs/actor_mimic.yaml``).
        steps: env steps per task (overrides the config).
        seed: seed of the student, its envs and its sampling; evaluation uses
            ``seed + 10000``.
        run_dir: run folder (default ``runs/distill/<tasks>__<method>__s<seed>``).
        overrides: nested config overrides (``--set``).
        resume: continue the unfinished run in ``run_dir``.
        safe: load the teachers without unpickling (see :func:`load_teachers`).

    Returns:
        A :class:`DistillResult`.

    Raises:
        UserError: bad teachers (same task twice, spaces that do not fit, mixed suites), bad
            config (also ``steps`` too few to reach ``learning_starts``: no update would run),
            a run folder that would be overwritten, a resume with other settings.
        NumericalError: a non-finite loss.
    """
    cfg, loaded, resolved, folder = _prepare(teachers, config, steps, seed, run_dir, overrides, safe)
    if resume:
        check_same_settings(folder, folder / "config.yaml", resolved,
                            fix="resume with the same teachers, config and --steps, or choose another --run-dir")
    run = RunFolder.open(folder, command="distill", config=resolved, seed=seed, resume=resume)
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(seed)
    student = build_student([task_info(t.task) for t in loaded], loaded[0].suite, cfg)
    student_path = run.path / "student.safetensors"
    source = {"run": str(run.path), "seed": seed, "method": method_name(cfg),
              "teachers": resolved["teachers"]}
    student, train_info = _train_stage(student, loaded, cfg, seed, run, source, resume)
    # Stage 2: the shared trunk as a trunk file (transfer it with `policyshare transfer`).
    trunk_path = save_trunk(student.trunk, run.path / "trunk.safetensors",
                            alignment={**student.alignment_kwargs,
                                       "height": student.trunk.spec.height,
                                       "width": student.trunk.spec.width},
                            source={**source, "student": str(student_path),
                                    "tasks": [t.task for t in loaded]})
    per_task = _evaluate_stage(student, loaded, cfg, seed, run)
    metrics = _metrics(student, loaded, cfg, seed, train_info, per_task, student_path, trunk_path)
    run.write_metrics(metrics)
    log.info(format_table(metrics))
    log.info(f"run folder:   {run.path}")
    log.info(f"student:      {student_path}  (policyshare evaluate {student_path} --task ID)")
    log.info(f"trunk:        {trunk_path}  (policyshare transfer --trunk {trunk_path} --env ID)")
    log.info(f"TensorBoard:  tensorboard --logdir {shlex.quote(str(run.tb_dir))}")
    return DistillResult(run.path, student_path, trunk_path, metrics, student)


def _prepare(teachers: Sequence[str], config: str | Path | None, steps: int | None, seed: int,
             run_dir: str | Path | None, overrides: Mapping[str, Any] | None,
             safe: bool) -> tuple[DistillConfig, list[Teacher], dict[str, Any], Path]:
    """The config, the loaded teachers, the resolved config of the run folder and its path;
    everything that can be refused is refused here, before anything is written."""
    cfg = load_distill_config(config, overrides)
    if steps is not None:
        if steps <= 0:
            raise UserError(f"--steps must be > 0, got {steps}")
        cfg = with_changes(cfg, "distill settings", steps=steps)
    loaded = load_teachers(teachers, cfg.device, safe=safe)
    suite = loaded[0].suite
    for t in loaded:
        check_vec_env(t.task, cfg.vec_env)
    resolved = {"teachers": [{"task": t.task, "path": str(t.path)} for t in loaded], "seed": seed,
                "suite": suite.name, "method": method_name(cfg), **to_dict(cfg)}
    name = "_".join(t.task.split("/")[-1] for t in loaded)
    folder = Path(run_dir) if run_dir is not None else default_run_dir("distill", name, seed,
                                                                       method_name(cfg))
    return cfg, loaded, resolved, folder


def _train_stage(student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
                 run: RunFolder, source: Mapping[str, Any], resume: bool) -> tuple[Student, dict[str, Any]]:
    """Stage 1: train the student and save it with ``train_info.json`` and ``timing.json``;
    skipped (the saved student is loaded) when ``student.safetensors`` exists."""
    student_path = run.path / "student.safetensors"
    train_info_path = run.path / "train_info.json"
    if student_path.is_file():
        return load_student(student_path), read_json(train_info_path, "training summary")
    train_info = train_student(student, teachers, cfg, seed, run, resume=resume)
    # Wall-clock figures live apart from metrics.json, which same-seed reruns reproduce exactly.
    wall, trained = train_info.pop("train_wall_s"), train_info.pop("env_steps_trained")
    atomic_write_json(run.path / "timing.json", {
        "train_wall_s": wall, "env_steps_trained_per_task": trained,
        "train_steps_per_s": round(trained * len(teachers) / wall, 1) if wall > 0 else None})
    atomic_write_json(train_info_path, train_info)
    save_student(student, student_path, {**source, "env_steps": train_info["env_steps"]})
    return student, train_info


def _evaluate_stage(student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
                    run: RunFolder) -> dict[str, dict[str, Any]]:
    """Stage 3: evaluate every task (student, teacher, random), one file per task
    (``evaluation/<task>.json``); tasks whose file exists are read, not evaluated again."""
    per_task: dict[str, dict[str, Any]] = {}
    for k, teacher in enumerate(teachers):
        path = run.path / "evaluation" / f"{slug(teacher.task)}.json"
        if path.is_file():
            per_task[teacher.task] = read_json(path, "task evaluation")
            continue
        result = evaluate_task(student, teacher, k, cfg.eval.final_episodes,
                               cfg.eval.random_episodes, seed + EVAL_SEED_OFFSET)
        atomic_write_json(path, result)
        per_task[teacher.task] = result
        log.info(f"{teacher.task}: student {result['student']['mean']:.2f}, teacher "
                 f"{result['teacher']['mean']:.2f}, random {result['random']['mean']:.2f}")
    return per_task


def _metrics(student: Student, teachers: Sequence[Teacher], cfg: DistillConfig, seed: int,
             train_info: Mapping[str, Any], per_task: Mapping[str, Mapping[str, Any]],
             student_path: Path, trunk_path: Path) -> dict[str, Any]:
    """Stage 4: the content of ``metrics.json`` (see :func:`distill`)."""
    scores = np.array([[per_task[t.task]["expert_normalised"] for t in teachers]], float)
    interval = iqm_intervals({"student": scores}, seed=seed, task_bootstrap=True)["student"]
    teacher_params = {t.task: t.n_parameters() for t in teachers}
    return {
        "tasks": [t.task for t in teachers], "seed": seed, "method": method_name(cfg),
        "env_steps_per_task": int(train_info["env_steps"]), "updates": int(train_info["updates"]),
        "eval_episodes": cfg.eval.final_episodes,
        "per_task": {task: {"student_return": r["student"]["mean"],
                            "student_std": r["student"]["std"],
                            "teacher_return": r["teacher"]["mean"],
                            "teacher_std": r["teacher"]["std"],
                            "random_return": r["random"]["mean"],
                            "expert_normalised": r["expert_normalised"],
                            "agreement": r["agreement"]} for task, r in per_task.items()},
        "expert_normalised_iqm": interval.as_dict(),
        "student_parameters": student.n_parameters(),
        "trunk_parameters": student.trunk.n_parameters(),
        "feature_map_parameters": int(train_info["feature_map_parameters"]),
        "teacher_parameters": sum(teacher_params.values()),
        "teacher_parameters_per_task": teacher_params,
        "student_to_teachers_ratio": student.n_parameters() / max(sum(teacher_params.values()), 1),
        "student": str(student_path), "trunk": str(trunk_path),
    }


def format_table(metrics: Mapping[str, Any]) -> str:
    """The per-task table, the IQM with its interval and the parameter counts, as text."""
    lines = [f"{'task':<28}{'student':>10}{'teacher':>10}{'random':>10}{'normalised':>12}{'agree':>8}"]
    for task, r in metrics["per_task"].items():
        lines.append(f"{task:<28}{format_number(r['student_return'], 2):>10}"
                     f"{format_number(r['teacher_return'], 2):>10}{format_number(r['random_return'], 2):>10}"
                     f"{format_number(r['expert_normalised'], 3):>12}{format_number(r['agreement'], 3):>8}")
    iv = metrics["expert_normalised_iqm"]
    lines.append(f"expert-normalised IQM over {len(metrics['per_task'])} tasks: "
                 f"{format_interval(iv['point'], iv['low'], iv['high'], 3, single='one task')} "
                 f"(95% bootstrap over tasks; — where a teacher is no better than random)")
    lines.append(f"parameters: student {metrics['student_parameters']:,} (+ "
                 f"{metrics['feature_map_parameters']:,} training-only feature maps), teachers "
                 f"together {metrics['teacher_parameters']:,} (ratio "
                 f"{metrics['student_to_teachers_ratio']:.3f})")
    return "\n".join(lines)
