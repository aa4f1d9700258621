"""The command line: `sweep` and its verbs, their options, `sweep init` and `sweep validate`'s dry run."""
