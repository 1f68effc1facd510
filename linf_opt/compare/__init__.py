"""Layer 7: comparing the feasible sets of competing well-posedness conditions (containment, slices,
volumes, distances, training under each set) and the report behind ``linf-opt compare``."""
