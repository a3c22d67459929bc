"""``executor: ray``: a stage's teacher calls answered by a pool of actors on a Ray cluster.

How a model stage runs on Ray:

1. The driver reads the input (same reader, same ids, same file:line errors
   as the local executor), asks the stage for the requests it will send, and
   splits them into calls with the dispatcher's cache keys. Calls the cache
   already answers stay home.
2. The misses go, batch by batch, to a pool of actors: one teacher engine per
   actor (a llama.cpp model per CPU actor, a vLLM engine per GPU actor, an API
   client per actor). The driver hands the batches out itself
   (``ray_dispatch.py``), so the run's one ``--max-cost`` budget (and a panel
   member's ``max_cost``) holds there:
   each call is reserved before it leaves and priced from its usage when it
   comes back. An API teacher's concurrency, rpm and tpm are split among the
   actors, so they hold for the whole run.
3. Each answered batch comes back to the driver, which commits every
   completion to its SQLite cache as it arrives. Workers never touch the
   cache, so it needs no shared filesystem and stays single-writer.
4. The ordinary local stage then runs in the driver and replays every call
   from the cache: the records equal the local executor's by construction,
   and a killed driver's rerun sends Ray only the calls still missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from distillpipe.cache import ResponseCache
from distillpipe.config import Config, ExecutorConfig
from distillpipe.dispatch import Dispatcher, _batched, utc_now
from distillpipe.errors import ConfigError, DistillpipeError, MissingDependencyError
from distillpipe.executors.ray_dispatch import hand_out
from distillpipe.executors.ray_worker import TeacherWorker, config_for_actor, most_actors
from distillpipe.inputs import stage_records
from distillpipe.io import STDIO
from distillpipe.progress import Mode, StageProgress, message
from distillpipe.runner import StageResult, run_stage
from distillpipe.stages.base import Stage, build_teacher, price_overrides
from distillpipe.teachers.base import Budget, Call, Completion
from distillpipe.teachers.cost import (
    BudgetGuard,
    TeacherBudget,
    TeacherPricing,
    price_for_teacher,
)
from distillpipe.teachers.members import PanelMember

_PLAN_CHUNK = 1000


@dataclass
class RayStats:
    executor: str = "ray"
    calls: int = 0
    cached: int = 0
    sent: int = 0
    actors: int = 0
    seconds: float = 0.0
    cost_usd: float = 0.0
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # a panel's, by name

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "seconds": round(self.seconds, 3),
            "cost_usd": round(self.cost_usd, 6),
        }


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("executor: ray", "ray") from None
    return ray


def connect(ray: Any, options: ExecutorConfig) -> None:
    """Join ``options.address`` (or $RAY_ADDRESS, or start a local Ray) unless already joined."""
    if ray.is_initialized():
        return
    ray.init(
        address=options.address,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def pool_size(ray: Any, options: ExecutorConfig, batches: int, most: int | None = None) -> int:
    """The configured actor count, else as many as the cluster's CPUs (GPUs) hold; never
    more than ``batches``, nor than ``most`` (the run-wide limits' smallest)."""
    if options.actors is not None:
        size = options.actors
    else:
        resources = ray.cluster_resources()
        if options.num_gpus > 0:
            size = int(resources.get("GPU", 0) // options.num_gpus)
        else:
            size = int(resources.get("CPU", 1) // options.num_cpus)
    return max(1, min(size, batches, most or batches))


@contextlib.contextmanager
def readable_twice(input_path: str | Path) -> Iterator[Path]:
    """The driver reads its input twice (plan, then replay): stdin is spooled to a file."""
    if str(input_path) != STDIO:
        yield Path(input_path)
        return
    with tempfile.TemporaryDirectory(prefix="distillpipe-ray-") as folder:
        spooled = Path(folder) / "stdin.jsonl"
        with spooled.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        yield spooled


class RayExecutor:
    name: ClassVar[str] = "ray"

    def __init__(self, options: ExecutorConfig) -> None:
        self.options = options

    def run_stage(
        self,
        stage: Stage,
        config: Config,
        input_path: str | Path,
        output_path: str | Path,
        *,
        rejected_path: str | Path | None = None,
        progress_mode: Mode = "quiet",
        budget: BudgetGuard | None = None,
        state_dir: Path | None = None,
    ) -> StageResult:
        # The same stage, run by the local runner with this call's options.
        run_locally = functools.partial(
            run_stage,
            rejected_path=rejected_path,
            progress_mode=progress_mode,
            budget=budget,
            state_dir=state_dir,
        )
        if hasattr(stage, "score_batch"):
            return self.run_filter_stage(
                stage, config, input_path, output_path, run_locally, progress_mode
            )
        if not hasattr(stage, "teacher_requests"):
            return run_locally(stage, config, input_path, output_path)
        if not config.cache.enabled:
            raise ConfigError(
                "executor: ray needs cache.enabled: true (the driver commits the actors' "
                "completions to the cache and replays them from there)"
            )
        with readable_twice(input_path) as path:
            stats = self.answer_on_ray(stage, config, path, progress_mode, budget)
            result = run_locally(stage, config, path, output_path)
        result.stats["executor"] = stats.as_dict()
        # Count the actors' calls as this stage's teacher calls, not as cache hits of the replay.
        teacher = result.stats.setdefault("teacher", {})
        teacher["teacher_calls"] = teacher.get("teacher_calls", 0) + stats.sent
        teacher["cache_hits"] = teacher.get("cache_hits", 0) - stats.sent
        teacher["cost_usd"] = teacher.get("cost_usd", 0.0) + stats.cost_usd
        for name, sent in stats.members.items():  # and each panel member's the same way
            row = result.stats.get("teachers", {}).get(name)
            if row is not None:
                row["teacher_calls"] += sent["sent"]
                row["cache_hits"] -= sent["sent"]
                row["cost_usd"] = round(row["cost_usd"] + sent["cost_usd"], 6)
        result.seconds += stats.seconds
        return result

    def run_filter_stage(
        self,
        stage: Stage,
        config: Config,
        input_path: str | Path,
        output_path: str | Path,
        run_locally: Callable[..., StageResult],
        progress_mode: Mode,
    ) -> StageResult:
        """Scores on a pool of actors, fit and decide on the driver (see ray_filter.py)."""
        from distillpipe.executors.ray_filter import FilterScorer, RayFilterStage, remote_filters

        shipped = remote_filters(config)
        if not shipped:
            return run_locally(stage, config, input_path, output_path)
        ray = import_ray()
        connect(ray, self.options)
        size = pool_size(ray, self.options, batches=sys.maxsize)
        actor = ray.remote(FilterScorer).options(**self._remote_args())
        scorers = [actor.remote(config, self.options.num_cpus) for _ in range(size)]
        message(progress_mode, f"{stage.name}: scoring on {size} Ray actors")
        try:
            result = run_locally(RayFilterStage(scorers), config, input_path, output_path)
        except Exception as exc:
            error = _project_error(exc)
            if error is None:
                raise
            raise error from None
        finally:
            for scorer in scorers:
                ray.kill(scorer)
        result.stats["executor"] = {
            "executor": "ray",
            "actors": size,
            "filters_on_actors": [options.filter_name for options in shipped],
        }
        return result

    def _remote_args(self) -> dict[str, Any]:
        options = self.options
        remote_args: dict[str, Any] = {"num_cpus": options.num_cpus}
        if options.num_gpus:
            remote_args["num_gpus"] = options.num_gpus
        if options.runtime_env:
            remote_args["runtime_env"] = options.runtime_env
        return remote_args

    def answer_on_ray(
        self,
        stage: Any,
        config: Config,
        path: Path,
        progress_mode: Mode,
        budget: BudgetGuard | None = None,
    ) -> RayStats:
        """Fill the cache with every call of the stage that it does not hold yet. With a
        panel (``teachers:``) each member in turn, on actors that build that member."""
        if config.teachers is not None:
            total = RayStats()
            for member in (m for m in config.teachers if m.answers):
                served = config.model_copy(update={"teacher": member.teacher})
                one = self._answer(stage, served, path, progress_mode, budget, member)
                for name in ("calls", "cached", "sent", "seconds", "cost_usd"):
                    setattr(total, name, getattr(total, name) + getattr(one, name))
                total.actors = max(total.actors, one.actors)
                total.members[member.name] = {"sent": one.sent, "cost_usd": one.cost_usd}
            return total
        return self._answer(stage, config, path, progress_mode, budget)

    def _answer(
        self,
        stage: Any,
        config: Config,
        path: Path,
        progress_mode: Mode,
        budget: BudgetGuard | None = None,
        member: PanelMember | None = None,
    ) -> RayStats:
        stats = RayStats()
        started = time.perf_counter()
        teacher = build_teacher(config)
        try:
            price = price_for_teacher(teacher, price_overrides(config))
            spending: Budget | None = budget
            if member is not None:  # its max_cost inside the run's, as on the local path
                spending = TeacherBudget(
                    member.name, member.max_cost, budget, teacher, price, stage.name
                )
            elif budget is not None:
                budget.attach(teacher, price, stage.name)
            cost = TeacherPricing.of(teacher, price).cost

            planner = Dispatcher(teacher, None, config.seed)
            records = stage_records(stage, path, config)
            if member is None:
                requests = stage.teacher_requests(records, config, teacher.mode)
            else:  # one member's requests; a plug-in stage's answers all members' at once
                requests = stage.teacher_requests(records, config, teacher.mode, member.name)
            with ResponseCache(config.cache.path) as cache:
                missing: dict[str, Call] = {}
                for chunk in _batched(requests, _PLAN_CHUNK):
                    calls = [call for request in chunk for call in planner.calls_for(request)]
                    found = cache.get_many(call.key for call in calls)
                    stats.calls += len(calls)
                    stats.cached += len(found)
                    for call in calls:
                        if call.key not in found and call.key not in missing:
                            missing[call.key] = call
                if missing:
                    self._send(list(missing.values()), config, cache, stats, stage, progress_mode,
                               spending, cost)  # fmt: skip
        finally:
            asyncio.run(teacher.aclose())
        stats.seconds = time.perf_counter() - started
        return stats

    def _send(
        self,
        calls: list[Call],
        config: Config,
        cache: ResponseCache,
        stats: RayStats,
        stage: Any,
        progress_mode: Mode,
        budget: Budget | None,
        cost: Callable[[Completion], float],
    ) -> None:
        ray = import_ray()
        connect(ray, self.options)
        options = self.options
        batches = math.ceil(len(calls) / options.batch_size)
        stats.actors = pool_size(ray, options, batches, most_actors(config.teacher))
        message(
            progress_mode,
            f"{stage.name}: {len(calls):,} calls to {stats.actors} Ray actors "
            f"({stats.cached:,} of {stats.calls:,} already cached)",
        )
        worker = ray.remote(TeacherWorker).options(**self._remote_args())
        actors = [
            worker.remote(config_for_actor(config, options.num_cpus, index, stats.actors))
            for index in range(stats.actors)
        ]
        progress = StageProgress(progress_mode, f"{stage.name} on ray", calls=len(calls))

        def commit(key: str, completion: Completion) -> None:
            if completion.created is None:  # as the dispatcher stamps what it sends
                completion = replace(completion, created=utc_now())
            cache.put(key, completion)
            stats.sent += 1
            stats.cost_usd += cost(completion)
            progress.call_done()

        finished = False
        try:
            hand_out(
                ray, actors, calls, batch_size=options.batch_size, budget=budget, commit=commit
            )
            finished = True
        except DistillpipeError:
            raise
        except Exception as exc:
            error = _project_error(exc)
            if error is None:
                raise
            raise error from None
        finally:
            progress.close(finished=finished)
            if finished:  # a failed run's actors may still be busy: no goodbyes
                with contextlib.suppress(Exception):
                    ray.get([actor.close.remote() for actor in actors], timeout=60)
            for actor in actors:
                ray.kill(actor)


def _project_error(exc: BaseException) -> DistillpipeError | None:
    """A distillpipe error raised in an actor, dug out of Ray's wrapping layers
    (RayTaskError.cause, UserCodeException, chained exceptions)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, DistillpipeError) and not _is_ray_wrapper(current):
            return current
        for linked in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return None


def _is_ray_wrapper(exc: BaseException) -> bool:
    """RayTaskError(FatalTeacherError) subclasses both; its message is a whole traceback."""
    return type(exc).__module__.startswith("ray.")
