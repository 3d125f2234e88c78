"""What the processes say to each other: the Celery application and its queues and task names
(shared by the scheduler and the API, which send, and the workers, which run), the embedded
filesystem transport, and Redis wake-ups. It sits below the leaves so that none of them has to
import another to talk to it."""
