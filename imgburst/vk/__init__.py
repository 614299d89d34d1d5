"""Burst scaler: queue-driven burst workers on Virtual Kubelet / ACI pods or local processes.

The signals (work, workers) come from `core.telemetry`; `policy` decides (pure); `backends`
act; `scaler` runs the loop; `events` records every decision.
"""
