"""The autoscaler: observe HTCondor demand and worker supply, decide, act on Nomad.

``observation`` holds the value types every part shares (no client library);
``strategy`` is the pure decision function.
"""
