"""The search: the YAML's space as Optuna distributions, the samplers, and Pareto fronts."""
