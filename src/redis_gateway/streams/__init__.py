"""Live data: pub/sub, MONITOR and Redis Streams, streamed to clients.

- ``hub``: one backend's subscriptions, fanned out (the interface every front door uses);
- ``subscriber``: a Redis connection in subscriber or MONITOR mode;
- ``sse``: the Upstash wire (``/subscribe``, ``/psubscribe``, ``/monitor``) over
  Server-Sent Events, and ``redis_streams``: resumable SSE over Redis Streams;
- ``ws``: the WebSocket endpoint (``/ws``).
"""
