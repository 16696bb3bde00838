"""Replay a queue history through the real autoscaler against a discrete-event model of the pool.

* :mod:`nomadwn.simulate.trace`: SWF and HTCondor history readers, windows;
* :mod:`nomadwn.simulate.world`: the pool model (Nomad placement and scale-in, HTCondor
  negotiation, partitionable slots, payloads, worker lifespan), on a heapq event queue;
* :mod:`nomadwn.simulate.peers`: the autoscaler's CondorSource and NomadAPI over the model;
* :mod:`nomadwn.simulate.runner`: the autoscaler's run and the static baseline;
* :mod:`nomadwn.simulate.report`: the table and the plot.
"""
