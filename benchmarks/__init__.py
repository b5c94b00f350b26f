"""The benchmarks, with the front door (nothing below it imports them):

- `learning`: `pedagogy bench learning`, the teaching mechanisms against plain distillation.
- `agents`: `pedagogy bench agents`, agent distillation against chain-of-thought distillation;
  `trajectories`: what an acting student's stored trajectories show.
- `core`: the resumable `Bench` (bench.json), one run's record, aggregation, the bar plot.
- `stats`: mean ± std over seeds, paired differences with t-intervals (scipy.stats).
- `arms`: the arms as data: `arms/learning.yaml` and `arms/agents.yaml`, loaded and checked.
- `learning_curve`: the default loop's learning curve without the graph
  (`python -m pedagogy.benchmarks.learning_curve`), used to pick the tiny student's recipe.

Importing this package imports none of them.
"""
