"""Models by reference: adapter references, held-out scoring, the sides of a comparison, and `sweep serve`."""
