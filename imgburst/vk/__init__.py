"""Burst scaler: queue-driven burst workers on Virtual Kubelet / ACI pods or local processes.

`signals` come from `core.inspect`; `policy` is pure; `backends` act; `scaler` loops.
"""
