"""A/B evidence: `sweep compare` and its report, the LLM judge, human ratings, error analysis."""
