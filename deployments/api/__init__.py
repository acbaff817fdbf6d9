"""The management API's routers for workloads: deployments.py (deployments, scaling, SLA, preset,
metrics, events, logs, chat), permissions.py (grants of scoped keys), webhooks.py (a deployment's
webhook subscriptions and deliveries). Assembled in gpucloud/api.py."""
