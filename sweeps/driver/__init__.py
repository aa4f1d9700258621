"""One sweep's driver: preflight, launch and resume, the parent run, the console display, warm starts, re-runs and the finalists' benchmarks."""
