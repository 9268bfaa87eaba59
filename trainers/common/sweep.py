"""The logic of a tuned, seeded optimizer sweep, without TensorFlow.

A sweep, per optimizer:

1. **Learning rate.** A log-spaced grid (`lr_grid`) is screened: one run per
   point of the full budget (`train_steps`, the seeded runs' schedule: a screen
   truncated at fewer steps would favour large rates), seed 0, on the *validation*
   split, scored by the final value of the sweep's `objective`: ``held_out`` (the
   validation loss: generalisation) or ``fixed_train`` (the loss on the trainer's
   fixed training examples, dropout off: optimisation speed). While the best point is at an edge of the grid, the grid
   grows by one point on that side (the edge times the grid's own ratio there),
   at most `max_extensions` times; a search that stops with its best still at
   the edge records ``bound_hit``. If every point diverged, the grid grows
   downwards (a smaller rate is the one that can converge). A one-point grid
   is a fixed value (no search), e.g. to reuse a rate chosen by another sweep;
   with at most one tau as well, nothing is chosen and no validation run is made.
   **Arms**: an optimizer may have several option sets (`option_grids`, e.g. Adam's
   beta_2 and warm-up); each gets its own rate search and the best arm wins.
2. **Clipping threshold** (gclip and cclip, when a `tau_grid` is given). Either
   ``stage`` (default): step 1 runs at the centre of the tau grid, then the tau
   grid is screened at the chosen rate, with the same edge extension; or
   ``cross``: step 1 runs once per tau (the rate search, extension included, for
   each), and the tau with the best rate wins, the tau grid extended the same
   way. Towards a larger tau the grid only grows while the edge run still
   clipped (clip fraction > 0): once nothing is clipped, a larger tau is the same
   optimizer.
3. **Seeds.** The chosen setting runs `seeds` times (seeds 0..seeds-1) for the
   full `train_steps` on the *test* split; the report gives the mean and the
   sample standard deviation (ddof=1) of the final test loss over the seeds
   that did not diverge, and the number that did, for both metrics (held-out and
   fixed training examples, when the trainer records them).
4. **Ties.** Every grid value whose screen score lies within one seed sd (of the
   chosen setting's seeds) of the best is *tied* with it: a grid flat within the
   seed noise has no winner, and the report says so.

A run has **diverged** when its final held-out loss is NaN/inf or exceeds its
own initial (step-0) held-out loss by more than `divergence_margin`, or when the
trainer exited non-zero saying something was not finite. Diverged runs stay in
the results with their settings; in the selection they score +inf, so they are
never chosen.

`Comparison` is this protocol over a search engine: ``search(...)`` runs one grid search
and ``seeds(...)`` one setting's seeds. trainers/common/study.py runs them as Optuna
studies (shared by N workers, resumed by rerunning the command, pruned); here only the
rules: what is searched, in which order, what is chosen and how it is reported.
"""

import dataclasses
import math
import re

import numpy as np

from trainers.common import optimizer_registry as registry

# A trainer's error that says a value was not finite: the run diverged (not a failure).
NON_FINITE = re.compile(r"\b(nan|inf|infinity|non-?finite)\b", re.IGNORECASE)
SPLIT_SELECT = "validation"
SPLIT_FINAL = "test"
OBJECTIVES = ("held_out", "fixed_train")
TAU_OPTIMIZERS = registry.TAU_OPTIMIZERS
TAU_SEARCHES = ("stage", "cross", "off")

# Centres of the default learning-rate grids (the registry's: on the gradient's scale for
# sgd/gclip/cclip and Algorithm 1, normalised for acclip_norm and Adam's family).
LR_CENTRES = {name: spec.lr_centre for name, spec in registry.OPTIMIZERS.items()}
LR_FACTOR = math.sqrt(10.0)  # two points per decade
LR_POINTS = 5

# Default tau grids (the registry's): a decade apart, three points, extended like the
# rate grid.
TAU_GRIDS = {name: registry.OPTIMIZERS[name].tau_grid for name in TAU_OPTIMIZERS}


def round_sig(x, digits=4):
    """`x` to `digits` significant digits (grid values print and name runs exactly)."""
    return float(f"{x:.{digits}g}")


def log_grid(centre, factor=LR_FACTOR, points=LR_POINTS):
    """`points` values spaced by `factor`, centred (geometrically) on `centre`."""
    if not centre > 0 or not factor > 1 or points < 1:
        raise ValueError(f"need centre > 0, factor > 1, points >= 1; got {centre}, "
                         f"{factor}, {points}")
    first = -(points - 1) / 2.0
    return [round_sig(centre * factor ** (first + i)) for i in range(points)]


def geometric_centre(grid):
    """The grid's middle point (the lower middle of an even grid)."""
    values = sorted(grid)
    return values[(len(values) - 1) // 2]


@dataclasses.dataclass(frozen=True)
class Trial:
    """One trainer run: its settings are its identity."""

    optimizer: str
    learning_rate: float
    tau: object  # float or None (the trainer's default / no threshold)
    seed: int
    split: str
    steps: int
    options: tuple = ()  # ((trainer flag, value), ...), sorted: the arm's fixed settings

    @property
    def name(self):
        """The run directory's name under model_dir/<optimizer>/."""
        tau = "" if self.tau is None else f"_tau{self.tau:g}"
        opts = "".join(f"_{k}-{v:g}" for k, v in self.options)
        return (f"lr{self.learning_rate:g}{tau}{opts}_seed{self.seed}_{self.split}_"
                f"{self.steps}steps")

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["options"] = dict(self.options)
        return d


def as_options(mapping):
    """{flag: value} -> the sorted tuple a Trial holds (an integer stays one: a flag such as
    --warmup_steps takes it as given)."""
    return tuple(sorted((str(k), v if isinstance(v, int) else float(v))
                        for k, v in (mapping or {}).items()))


def trial_from_dict(d):
    return Trial(d["optimizer"], float(d["learning_rate"]),
                 None if d.get("tau") is None else float(d["tau"]), int(d["seed"]),
                 d["split"], int(d["steps"]), as_options(d.get("options")))


def _finite(x):
    return x is not None and math.isfinite(x)


def classify(curve, exit_code=0, message="", margin=1.0):
    """(diverged, reason) of a run from its held-out curve [[step, loss], ...]."""
    if exit_code:
        return True, f"trainer exited {exit_code}: {message}".strip()
    if not curve:
        return True, "no held-out loss recorded"
    final = curve[-1][1]
    if not _finite(final):
        return True, f"final held-out loss is {final}"
    initial = curve[0][1] if curve[0][0] == 0 else None
    if _finite(initial) and final > initial + margin:
        return True, (f"final held-out loss {final:.4g} > initial {initial:.4g} + "
                      f"margin {margin:g}")
    return False, ""


RAW_FIELDS = ("curve", "held_out_curve", "fixed_train_curve", "exit_code", "message",
              "wall_seconds", "train_seconds", "steps_trained", "clip_fraction", "train_loss")


def _curve(points):
    return [[int(s), (float(v) if v is not None else float("nan"))] for s, v in points or []]


def trial_record(trial, stage, result):
    """results.json's record of `trial` from its result (the trainer's raw fields with the
    engine's verdict: ``diverged``, ``divergence_reason``, ``pruned``, ``score``, ``reused``).

    `curve` is the objective's curve (scored, tested for divergence); `held_out_curve`
    and `fixed_train_curve` (when the runner read them) give both metrics' finals."""
    curve = _curve(result.get("curve"))
    record = trial.as_dict()
    record.update({k: result.get(k) for k in RAW_FIELDS})
    finals = {}
    for metric in OBJECTIVES:
        points = _curve(result.get(f"{metric}_curve"))
        record[f"{metric}_curve"] = points or None
        finals[f"{metric}_final"] = points[-1][1] if points else None
    record.update(
        name=trial.name, stage=stage, curve=curve,
        final_loss=curve[-1][1] if curve else float("nan"),
        initial_loss=curve[0][1] if curve and curve[0][0] == 0 else None,
        diverged=bool(result.get("diverged")),
        divergence_reason=result.get("divergence_reason") or "",
        pruned=bool(result.get("pruned")), score=result["score"],
        reused=bool(result.get("reused")), **finals)
    return record


def search_grid(evaluate, grid, max_extensions, can_extend=None):
    """Minimise ``evaluate(value) -> (score, record)`` over a log-spaced grid.

    A one-value grid is fixed (never extended). While the best value is at an
    edge (or every score is +inf: then the low edge), one more value is added
    beyond that edge at the grid's own ratio there, at most `max_extensions`
    times; `can_extend(side, record_at_edge)` may refuse a side. Equal scores
    go to the smaller value. Returns a dict: values, scores (sorted by value),
    best (None if all +inf), best_score, extensions, at_edge, bound_hit, stopped.
    """
    results = {}
    for v in sorted(set(grid)):
        results[v] = evaluate(v)
    extensions, bound_hit, stopped = 0, False, ""
    while True:
        values = sorted(results)
        scores = [results[v][0] for v in values]
        finite = [s for s in scores if math.isfinite(s)]
        if not finite:
            side = "low"
        else:
            i = int(np.argmin(scores))
            side = "low" if i == 0 else "high" if i == len(values) - 1 else None
        if side is None or len(grid) == 1:
            break
        if side == "low":
            ratio = values[1] / values[0]
        else:
            ratio = values[-1] / values[-2]
        edge = values[0] if side == "low" else values[-1]
        if can_extend is not None and not can_extend(side, results[edge][1]):
            stopped = f"not extended to the {side} side: " + getattr(
                can_extend, "reason", "refused")
            break
        if extensions >= max_extensions:
            bound_hit = True
            break
        new = round_sig(edge / ratio if side == "low" else edge * ratio)
        extensions += 1
        results[new] = evaluate(new)
    values = sorted(results)
    scores = [results[v][0] for v in values]
    best = None
    if any(math.isfinite(s) for s in scores):
        best = values[int(np.argmin(scores))]
    return dict(values=values, scores=scores, best=best,
                best_score=results[best][0] if best is not None else math.inf,
                extensions=extensions,
                at_edge=best is not None and best in (values[0], values[-1]) and len(values) > 1,
                bound_hit=bound_hit, stopped=stopped)


def _clipping_active(side, record):
    """Grow a tau grid upwards only while its edge run still clipped."""
    if side == "low" or record is None:
        return True
    clip = record.get("clip_fraction")
    return clip is None or not clip == 0


_clipping_active.reason = "the largest tau clipped nothing (clip fraction 0)"


def mean_sd(values):
    """(mean, sample sd with ddof=1; 0 for one value, NaN for none)."""
    n = len(values)
    mean = float(np.mean(values)) if n else math.nan
    sd = float(np.std(values, ddof=1)) if n > 1 else (0.0 if n == 1 else math.nan)
    return mean, sd


def aggregate(records):
    """Mean and sample sd (ddof=1) of the final objective over the runs that did not
    diverge, their count, the diverged count, the mean final clip fraction, and the
    same mean and sd of each metric (`held_out`, `fixed_train`) the runs recorded."""
    ok = [r for r in records if not r["diverged"]]
    losses = [r["final_loss"] for r in ok]
    mean, sd = mean_sd(losses)
    clips = [r["clip_fraction"] for r in ok if r.get("clip_fraction") is not None]
    out = dict(losses=[float(x) for x in losses], mean=mean, sd=sd, n=len(losses),
               diverged=len(records) - len(losses), seeds=[r["seed"] for r in records],
               names=[r["name"] for r in records],
               clip_fraction=float(np.mean(clips)) if clips else None)
    for metric in OBJECTIVES:
        values = [r[f"{metric}_final"] for r in ok if r.get(f"{metric}_final") is not None]
        m, d = mean_sd(values)
        out[metric] = dict(mean=m, sd=d, n=len(values)) if values else None
    return out


def tied_values(search, sd):
    """The searched values whose score lies within `sd` (one seed sd of the chosen
    setting) of the best score, the best included: more than one means the grid is
    flat within the seed noise, a tie rather than a winner."""
    if not search or search.get("best") is None or not sd == sd:
        return []
    best = search["best_score"]
    return [v for v, score in zip(search["values"], search["scores"])
            if math.isfinite(score) and score <= best + sd]


@dataclasses.dataclass
class Config:
    optimizers: list
    lr_grids: dict  # optimizer -> initial learning-rate grid
    train_steps: int  # the full budget of every run, screens and seeds alike
    seeds: int = 3
    tau_grids: dict = dataclasses.field(default_factory=dict)  # gclip/cclip -> grid
    tau_search: str = "stage"
    max_extensions: int = 3
    divergence_margin: float = 1.0
    # optimizer -> [{trainer flag: value}, ...]: its arms (default: one arm, no options)
    option_grids: dict = dataclasses.field(default_factory=dict)
    objective: str = "held_out"

    def __post_init__(self):
        if self.tau_search not in TAU_SEARCHES:
            raise ValueError(f"tau_search must be one of {TAU_SEARCHES}, got {self.tau_search!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.train_steps < 1 or self.seeds < 1 or self.max_extensions < 0:
            raise ValueError("need train_steps >= 1, seeds >= 1, max_extensions >= 0")
        for name in self.optimizers:
            if not self.lr_grids.get(name):
                raise ValueError(f"no learning-rate grid for {name}")

    def arms(self, optimizer):
        """The option sets of `optimizer` (as Trial.options tuples); one empty one by default."""
        return [as_options(o) for o in self.option_grids.get(optimizer) or [{}]]

    def taus(self, optimizer):
        if self.tau_search == "off" or optimizer not in TAU_OPTIMIZERS:
            return []
        return sorted(self.tau_grids.get(optimizer) or [])

    def is_fixed(self, optimizer):
        """One learning rate, at most one tau and one arm: nothing to choose, so no
        validation run (the setting goes straight to its seeds)."""
        return (len(self.lr_grids[optimizer]) == 1 and len(self.taus(optimizer)) <= 1
                and len(self.arms(optimizer)) == 1)

    def planned_trials(self, optimizer):
        """The trials of `optimizer` known before any result (no grid extension): each
        arm's screens (the rate grid, then the tau grid but its centre; with the cross
        search the rate grid at each tau), then the seeds."""
        taus, lrs = self.taus(optimizer), len(self.lr_grids[optimizer])
        per_arm = (len(taus) * lrs if taus and self.tau_search == "cross"
                   else lrs + max(len(taus) - 1, 0))
        screens = 0 if self.is_fixed(optimizer) else per_arm * len(self.arms(optimizer))
        return screens + self.seeds


def _summary(search):
    """A search as the selections keep it: its values and scores (the trials are listed
    once, in results.json's trials)."""
    return {k: v for k, v in search.items() if k != "records"} if search else search


class Comparison:
    """The sweep of `config` on a search engine:

    * ``search(optimizer, options, stage, fixed, param, grid, can_extend=None, known=())``
      searches `param` over `grid` (search_grid's rules) with the `fixed` settings
      ({"tau": ...} or {"learning_rate": ...}), seed 0 on the validation split; `known`:
      trial records of the same points already run (the tau stage's centre). Returns
      search_grid's dict plus ``records`` (trial records, by value).
    * ``seeds(optimizer, selection)`` runs the chosen setting's seeds on the test split and
      returns their trial records.
    """

    def __init__(self, config, search, seeds):
        self.config, self.search, self.seeds = config, search, seeds
        self.records = {}  # (optimizer, trial name) -> trial record, first seen first
        self.selections = {}
        self.finals = {}

    def _keep(self, result):
        for r in result["records"]:
            self.records.setdefault((r["optimizer"], r["name"]), r)
        return result

    def _screen(self, name, lr, tau, opts):
        """The record of the validation run of one point (seed 0, the full budget)."""
        trial = Trial(name, lr, tau, 0, SPLIT_SELECT, self.config.train_steps, opts)
        return self.records[(name, trial.name)]

    def _lr_search(self, name, tau, opts):
        return self._keep(self.search(name, opts, "lr", {"tau": tau}, "learning_rate",
                                      self.config.lr_grids[name]))

    def _select_arm(self, name, opts):
        """(lr, tau, lr_search, tau_search) of one arm of `name` on the validation split."""
        c = self.config
        taus = c.taus(name)
        lr_search, tau_search = None, None
        if taus and c.tau_search == "cross":
            per_tau = {}

            def evaluate(tau):
                per_tau[tau] = found = self._lr_search(name, tau, opts)
                best = found["best"]
                return found["best_score"], (self._screen(name, best, tau, opts)
                                             if best is not None else None)

            tau_search = search_grid(evaluate, taus, c.max_extensions, _clipping_active)
            tau = tau_search["best"]
            lr_search = per_tau[tau] if tau is not None else per_tau[min(per_tau)]
            lr = lr_search["best"]
            tau_search["lr_searches"] = {f"{t:g}": _summary(s) for t, s in per_tau.items()}
        else:
            tau = geometric_centre(taus) if taus else None
            lr_search = self._lr_search(name, tau, opts)
            lr = lr_search["best"]
            if taus and lr is not None:
                tau_search = self._keep(self.search(
                    name, opts, "tau", {"learning_rate": lr}, "tau", taus, _clipping_active,
                    known=[self._screen(name, lr, tau, opts)]))
                if tau_search["best"] is not None:
                    tau = tau_search["best"]
        return lr, tau, lr_search, tau_search

    def select(self, name):
        """The chosen (learning rate, tau, options) of `name` on the validation split:
        each arm's search, then the arm with the best score."""
        c = self.config
        taus = c.taus(name)
        if c.is_fixed(name):
            selection = dict(learning_rate=c.lr_grids[name][0], tau=taus[0] if taus else None,
                             options=dict(c.arms(name)[0]), validation_loss=None, steps=0,
                             split=None, fixed=True)
            self.selections[name] = dict(chosen=selection, lr_search=None, tau_search=None)
            return selection
        arms = []
        for opts in c.arms(name):
            lr, tau, lr_search, tau_search = self._select_arm(name, opts)
            score = self._screen(name, lr, tau, opts)["score"] if lr is not None else math.inf
            arms.append(dict(options=opts, learning_rate=lr, tau=tau, score=score,
                             lr_search=lr_search, tau_search=tau_search))
        best = min(arms, key=lambda a: a["score"])
        selection = None
        if best["learning_rate"] is not None:
            chosen = self._screen(name, best["learning_rate"], best["tau"], best["options"])
            selection = dict(learning_rate=best["learning_rate"], tau=best["tau"],
                             options=dict(best["options"]), validation_loss=chosen["final_loss"],
                             steps=c.train_steps, split=SPLIT_SELECT)
        self.selections[name] = dict(
            chosen=selection, lr_search=_summary(best["lr_search"]),
            tau_search=_summary(best["tau_search"]),
            arms=[dict(options=dict(a["options"]), learning_rate=a["learning_rate"], tau=a["tau"],
                       score=a["score"], trials=len(a["lr_search"]["values"]) + (
                           len(a["tau_search"]["values"]) if a["tau_search"] else 0))
                  for a in arms] if len(arms) > 1 else None,
            trials=sum(1 for r in self.records.values()
                       if r["optimizer"] == name and r["split"] == SPLIT_SELECT))
        return selection

    def final(self, name, selection):
        if selection is None:
            self.finals[name] = None
            return None
        records = self.seeds(name, selection)
        for r in records:
            self.records.setdefault((r["optimizer"], r["name"]), r)
        self.finals[name] = aggregate(records)
        # A grid flat within one seed sd of the chosen setting: a tie, not a winner.
        sel = self.selections.get(name) or {}
        sel["tied_learning_rates"] = tied_values(sel.get("lr_search"), self.finals[name]["sd"])
        return self.finals[name]

    def run(self):
        for name in self.config.optimizers:
            self.final(name, self.select(name))
        return self.state()

    def state(self):
        """Everything results.json keeps (floats may be non-finite)."""
        return dict(trials=list(self.records.values()), selections=dict(self.selections),
                    finals=dict(self.finals))
