"""The service's API contract: typed messages and documents, both directions.

Everything the service sends on its WebSocket and HTTP API, and everything the
integration reads from it, is defined once here (see docs/api.md for what the
values mean). The package imports only the standard library and refers to itself
with relative imports, so it can leave this folder as a library unchanged: the
integration ships it inside its own folder, and the service package reaches the
same files through ``ecu_proxy/contract`` (a link to this folder).

* ``codec.py``: data classes <-> JSON, and their JSON Schema;
* ``constants.py``: schema versions, close and error codes, the domain, EMA's names;
* ``state.py``: the state document and its parts;
* ``messages.py``: the WebSocket messages (greeting, results, events);
* ``frames.py``: relayed frames and their decodes;
* ``schema.py``: writes docs/state.schema.json from ``state.py``.
"""
