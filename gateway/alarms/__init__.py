"""The alarm queue: what dispatchers must attend to (queue.py, pure), where it is kept
(store.py) and the part of the running gateway that feeds and serves it (desk.py)."""
