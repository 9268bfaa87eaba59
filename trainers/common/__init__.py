"""What every trainer shares: flags, strategy, optimizer, loop, checkpoints, reports.

A task (BERT pretraining, SQuAD, image classification) implements
`trainers.common.task.Task` and hands it to `trainers.common.runner.run`.
"""
