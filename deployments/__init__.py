"""Workloads customers run: model deployments, serverless endpoints, dedicated deployments and
pods, with their replicas, scaling, SLA, webhooks and the OpenAI-compatible gateway.

The foundation holds only the Deployment row (so deployment keys can point at one); the
fleet issue adds provisioning, replicas and the rest."""
