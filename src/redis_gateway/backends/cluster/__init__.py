"""Redis Cluster: the backend (``backend.py``) and the pieces it is made of.

``layout`` parses what a node says of the cluster's shards, ``slotmap`` keeps the map
of slots to shards, ``redirect`` reads MOVED/ASK, ``tips`` reads the routing tips Redis
gives cluster clients, ``fanout`` and ``multikey`` run commands on several nodes and
merge their replies, and ``router`` sends each command of a batch where it belongs.
"""
