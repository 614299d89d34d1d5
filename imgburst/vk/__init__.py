"""Burst scaler: queue-driven burst workers on Virtual Kubelet / ACI (see the scaler issue)."""
