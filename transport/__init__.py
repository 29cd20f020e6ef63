"""MQTT transport: one asyncio client per connection on the `mqtt5` sans-I/O codec, batched
writes, capped jittered reconnects; broker addresses; the event loop. Knows nothing of the
protocol's topics or messages."""
