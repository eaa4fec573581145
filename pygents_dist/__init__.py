"""pygents_dist: pygents agents across processes and machines over Redis."""
