"""The encode pipeline's orchestration: stages as queue jobs, and the worker that runs them."""
