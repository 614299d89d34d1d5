"""The statuses of jobs and batches, and other names the commands share with the store.

Apart from `schema.py` so that a command (`imgburst submit`) reads them without loading
SQLAlchemy: it starts while the workers wait for its first image.
"""

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_ACTIVE = ("queued", "running")  # a job in one of these may still run
JOB_FINAL = ("succeeded", "failed", "cancelled")  # a job in one of these never runs again
# A batch's status is read from its jobs' (store.batch_status); `partial`: some failed;
# `receiving`: a streamed batch still open for images (its jobs run meanwhile).
BATCH_STATUSES = ("receiving", "queued", "running", "succeeded", "failed", "partial",
                  "cancelled")
BATCH_FINAL = ("succeeded", "failed", "partial", "cancelled")
CLOSED_BY = ("client", "idle", "cancel")  # who closed a streamed batch

MAX_BATCH_NAME = 200  # characters of a batch's name
