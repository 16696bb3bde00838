"""The autoscaler: observe HTCondor demand and worker supply, decide, act on Nomad.

The value types every part shares live in :mod:`nomadwn.pool` (no client library);
``strategy`` is the pure decision function and ``loop`` the observe/decide/act step.
"""
