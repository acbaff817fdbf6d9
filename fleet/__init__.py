"""The seam to compute: provider drivers (providers/<name>/, each a copyable package), offers, the
Instance rows that record every machine from launch request to confirmed termination,
provisioning, the reconciler, and the control plane's client to engines (engines.py). Workloads
plug in through workloads.py; the fleet never imports them."""
