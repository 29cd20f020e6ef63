"""What the API's routes call: read views of the running gateway and the stored data. Routes do
not reach into the engine (control plane, relay) or write SQL; these services do it for them."""
