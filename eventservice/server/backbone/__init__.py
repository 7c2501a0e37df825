"""Several Event Services sharing one subject space over Redis (``es --backbone``).

codec (the message format), routing (interest and shards, pure), link (one
Redis instance), node (joins an EventService). Importing this package imports
nothing of redis; node and link do, and are imported only with a backbone.
"""
