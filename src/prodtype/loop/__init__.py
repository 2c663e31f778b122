"""The learning loop: registry, feedback, evaluation set, trigger, promotion, retrain steps and jobs,
champion follower, monitoring."""
