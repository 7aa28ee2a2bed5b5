"""One panel per task: a thin view over the task's result record."""
