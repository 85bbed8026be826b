"""Redis Streams work queues with at-least-once delivery through consumer groups.

``consumer``: the loop a worker runs (read, handle, ack, reclaim, dead-letter). ``queues``: what
producers and the autoscaler use (enqueue, groups, trimming, backlog). ``signals``: SIGTERM/SIGINT as
a stop event.
"""
