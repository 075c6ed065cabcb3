"""Slow tests that build the serving image and run it the way SageMaker does."""
