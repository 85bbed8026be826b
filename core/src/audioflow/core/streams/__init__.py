"""Redis Streams work queues with at-least-once delivery through consumer groups.

``consumer``: the loop a worker runs (read, handle, ack, reclaim, dead-letter); ``entries``: what it
hands a handler and gets back; ``leases``: lease renewal while handling, and backoff. ``queues``: what
producers and the autoscaler use (enqueue, groups, dead-letter, trimming, backlog). ``signals``:
SIGTERM/SIGINT as a stop event.
"""
